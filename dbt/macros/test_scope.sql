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

{#- The rows of `model` sharing a key (tests/generic/generic_tests.sql: `no_duplicate_keys`, and
    `row_rules` with a `unique_key`), each with its broken rule `duplicate_<key columns>`. -#}
{% macro duplicate_rows(model, key, new_rows_only, within) %}
    {%- set keys = key | join(', ') %}
    {%- set bound = 'true' %}
    {%- if new_rows_only %}
        {%- set after = tests_after_seq() %}
        {%- set new_rows = loaded_after(after, within) %}
        {%- set bound = '(' ~ keys ~ ') in (select (' ~ keys ~ ') from ' ~ model ~ ' where ' ~ new_rows ~ ')' %}
        {%- if within and execute %}
            {%- set span = run_query(
                "select min(" ~ within ~ "), max(" ~ within ~ ") from " ~ model
                ~ " where " ~ new_rows
            ).rows[0] -%}
            {%- set bound = bound ~ ' and ' ~ within ~ ' between ' ~ timestamp_literal(span[0]) ~ ' and ' ~ timestamp_literal(span[1]) %}
        {%- endif %}
    {%- endif %}
    select *, 'duplicate_{{ key | join("_") }}' as broken_rules
    from {{ model }}
    where {{ bound }}
        and ({{ keys }}) in (
            select ({{ keys }}) from {{ model }} where {{ bound }}
            group by {{ keys }} having count(*) > 1
        )
{% endmacro %}
