{#- Data tests on tables that grow every tick check only the rows loaded in the last day,
    so their cost stays flat as history grows: older rows were checked when they were
    loaded, and a tick can only add or change rows it loads. A test opts in with
    `config: {where: "__loaded_last_day__"}`. The bound is rendered here, at run time, as a
    literal (not in the YAML, which is parsed once per process), so it also prunes old
    row groups and partitions. This is dbt's documented way to customise `where`. -#}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where') -%}
    {%- if where -%}
        {%- if '__loaded_last_day__' in where -%}
            {%- set where = where | replace('__loaded_last_day__', 'loaded_at >= ' ~ loaded_last_day_literal()) -%}
        {%- endif -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ where }}) dbt_subquery
        {%- endset -%}
        {%- do return(filtered) -%}
    {%- else -%}
        {%- do return(relation) -%}
    {%- endif -%}
{%- endmacro %}

{#- A day before now (UTC, as the loader stamps `loaded_at`), as a literal. -#}
{% macro loaded_last_day_literal() -%}
    {%- set since = modules.datetime.datetime.utcnow() - modules.datetime.timedelta(days=1) -%}
    {{ return(timestamp_literal(since)) }}
{%- endmacro %}
