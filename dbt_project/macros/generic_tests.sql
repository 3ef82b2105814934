{# Generic tests written here because dbt hub packages cannot be installed. #}

{# Every value lies in [min_value, max_value]. #}
{% test accepted_range(model, column_name, min_value=none, max_value=none) %}
select {{ column_name }} as out_of_range_value
from {{ model }}
where {{ column_name }} is not null
  and (
    {% if min_value is not none %}{{ column_name }} < {{ min_value }}{% else %}false{% endif %}
    or {% if max_value is not none %}{{ column_name }} > {{ max_value }}{% else %}false{% endif %}
  )
{% endtest %}

{# The column never precedes another timestamp column on the same row. #}
{% test not_before(model, column_name, other_column) %}
select {{ column_name }}, {{ other_column }}
from {{ model }}
where {{ column_name }} < {{ other_column }}
{% endtest %}

{# A boolean SQL expression holds on every row. #}
{% test expression_is_true(model, expression) %}
select * from {{ model }} where not ({{ expression }})
{% endtest %}

{# The combination of columns is unique. #}
{% test unique_combination(model, combination) %}
select {{ combination | join(', ') }}, count(*) as n
from {{ model }}
group by {{ combination | join(', ') }}
having count(*) > 1
{% endtest %}

{# No timestamp lies further in the future than now (UTC) plus a tolerance: catches clock bugs
   and mistyped years. Raw timestamps are naive UTC; the raw sources get
   ml.raw.contracts.FUTURE_TOLERANCE, which quarantines such rows before dbt reads them. #}
{% test not_in_future(model, column_name, tolerance_hours=24) %}
select {{ column_name }} as future_value
from {{ model }}
where {{ column_name }} > (now() at time zone 'UTC') + interval '{{ tolerance_hours }} hours'
{% endtest %}
