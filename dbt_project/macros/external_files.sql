{# Whether any file matches a glob: a model over an append-only lake folder that may still be empty (no
   failed run yet, no monitored day yet) selects nothing instead of failing on read_parquet. At parse time
   it says yes, so the source() in the guarded branch is always part of the lineage. #}
{% macro external_files_exist(pattern) %}
  {%- if not execute -%}{{ return(true) }}{%- endif -%}
  {%- set result = run_query("select count(*) from glob('" ~ pattern ~ "')") -%}
  {{ return(result.columns[0].values()[0] > 0) }}
{% endmacro %}
