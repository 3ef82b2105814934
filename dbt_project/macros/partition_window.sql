{# Incremental runs rebuild the partition window plus the late-arrival lookback behind it. #}
{% macro window_start() -%}
  (date '{{ var("min_date") }}' - interval {{ var("late_arrival_days") }} day)::date
{%- endmacro %}
{% macro window_end() -%}
  date '{{ var("max_date") }}'
{%- endmacro %}

{# Stable evaluation bucket in [0, 100) from a text hash: must equal ml.text.eval_bucket. #}
{% macro eval_bucket(hash_column) -%}
  (('0x' || substr({{ hash_column }}, 1, 8))::ubigint % 100)::smallint
{%- endmacro %}
