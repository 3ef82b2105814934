"""The raw platform tables: their contracts (`contracts`), the validation engine that checks a file
against them (`validation`), the check of the raw lake that quarantines bad files (`lake_check`), and
the landing zone for external files (`landing`, with the rules that need the lake in `landing_check`)."""
