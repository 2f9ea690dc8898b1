{#- Data tests check what a build added, so one old row can never fail every later build.
    A test opts in with `config: {where: "__new_rows__"}`: it then sees only rows whose
    `load_seq` is above the last successful build's (the pipeline passes that number as
    CRYPTOLYTICS_TESTS_AFTER_SEQ; 0, every row, when dbt runs by hand). A whole-table audit of
    the same tests runs on its own schedule (the `audit` flow: CRYPTOLYTICS_TESTS_AFTER_SEQ
    unset) and never blocks a tick. The bound is rendered here, at run time, as a literal (not
    in the YAML, which is parsed once per process), so it also prunes old row groups and
    partitions. `__recent__(column)` adds the recent span's bound on a time column
    (macros/new_rows.sql): the same rows, read from the recent day's BigQuery partition instead
    of the whole history. This is dbt's documented way to customise `where`. -#}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where') -%}
    {%- if where -%}
        {%- if '__new_rows__' in where -%}
            {%- set where = where | replace('__new_rows__', 'load_seq > ' ~ tests_after_seq()) -%}
        {%- endif -%}
        {%- if '__recent__(' in where -%}
            {%- set column = where.split('__recent__(')[1].split(')')[0] -%}
            {%- set where = where | replace(
                '__recent__(' ~ column ~ ')', recent_bound(tests_after_seq(), column)
            ) -%}
        {%- endif -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ where }}) dbt_subquery
        {%- endset -%}
        {%- do return(filtered) -%}
    {%- else -%}
        {%- do return(relation) -%}
    {%- endif -%}
{%- endmacro %}

{#- The load sequence above which this build's tests look, as an integer literal. -#}
{% macro tests_after_seq() -%}
    {%- set value = env_var('CRYPTOLYTICS_TESTS_AFTER_SEQ', '0') | trim -%}
    {%- if not value.isdigit() -%}
        {{ exceptions.raise_compiler_error("CRYPTOLYTICS_TESTS_AFTER_SEQ must be a whole number, got " ~ value) }}
    {%- endif -%}
    {{ return(value | int) }}
{%- endmacro %}
