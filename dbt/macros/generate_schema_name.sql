{#- Models land in exactly the schema their folder names (staging, prod): DuckDB schemas on
    the local target, or the datasets the cloud target names through DBT_STAGING_SCHEMA and
    DBT_PROD_SCHEMA (flows/adapters/targets.py sets them from settings). dbt's default would prefix
    the target schema (main_staging). -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ env_var('DBT_' ~ custom_schema_name | upper ~ '_SCHEMA', custom_schema_name) }}
    {%- endif -%}
{%- endmacro %}
