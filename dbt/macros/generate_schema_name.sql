{#- Models land in exactly the schema their folder names (staging, prod), resolved through
    vars so the cloud target can map them to its datasets; dbt's default would prefix
    the target schema (main_staging). -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ var(custom_schema_name ~ '_schema', custom_schema_name) }}
    {%- endif -%}
{%- endmacro %}
