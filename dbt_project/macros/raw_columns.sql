{# The columns of raw source `table`, cast to the types of its contract and renamed where `rename` says.
   The raw sources YAML is rendered from ml/raw/contracts.py (orchestration/dbt_inputs.py) with each
   column's data_type, so a staging model never restates a raw table's columns. At parse time (no
   graph yet) it says `*`; the model's source() call alone records the lineage. #}
{% macro raw_columns(table, rename={}) -%}
  {%- if not execute -%}
    *
  {%- else -%}
    {%- set columns = graph.sources['source.' ~ project_name ~ '.raw.' ~ table].columns.values() | list -%}
    {%- if not columns -%}
      {{ exceptions.raise_compiler_error("raw source " ~ table ~ " has no columns: run `trustlake prepare` to render its sources YAML") }}
    {%- endif -%}
    {%- for column in columns %}
    cast({{ adapter.quote(column.name) }} as {{ column.data_type }}) as {{ rename.get(column.name, column.name) }}{{ "," if not loop.last }}
    {%- endfor -%}
  {%- endif -%}
{%- endmacro %}

{# Values as a SQL list of string literals: `in ({{ sql_list(var('enforcements')) }})`. The lists are
   the vocabularies of ml/taxonomy.py, which dbt reads as vars. #}
{% macro sql_list(values) -%}
  {%- for value in values %}'{{ value }}'{% if not loop.last %}, {% endif %}{% endfor -%}
{%- endmacro %}
