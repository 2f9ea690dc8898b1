{#- Our own generic tests (no dbt hub packages offline). Each returns the failing rows,
    whole (`select *`) with the rule they break (`broken_rules`), so a stored failure names
    the lake file it came from and why; nulls pass, as in dbt's built-ins: not_null says
    whether a column may be null. -#}

{#- Every row that breaks one of `rules` (name: a condition each row must meet), in one
    scan of the table however many rules there are: a build runs one test node instead of one
    per rule (each node costs dbt about 25-60 ms here, more for a stored failure than its
    query). A rule whose condition is null for a row (a null column) passes, as dbt's
    built-ins do. Each failing row carries `broken_rules`, the names of the rules it breaks,
    which the build's dead letters give as their reason. -#}
{% test row_rules(model, rules) %}
    {%- set checks = [] %}
    {%- for name, condition in rules.items() %}
        {%- do checks.append("case when not (" ~ condition ~ ") then '" ~ name ~ " ' else '' end") %}
    {%- endfor %}
    with checked as (
        select *, trim({{ dbt.concat(checks) }}) as broken_rules
        from {{ model }}
    )
    select * from checked
    where broken_rules != ''
{% endtest %}

{#- Rows sharing a key. With `new_rows_only`, only keys of rows this build added (`load_seq` above the last
    successful build's) are checked: a duplicate needs a new row, so this finds every
    duplicate a build can create. With `within` (a time column of the key), the search for
    their twins is bounded to the time span of those new keys, so the cost stays flat as
    history grows; both bounds are literals, which prune old row groups/partitions. Failing
    rows are returned whole, their broken rule `duplicate_<key columns>`. -#}
{% test no_duplicate_keys(model, key, new_rows_only=false, within=none) %}
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
    with candidates as (
        select * from {{ model }} where {{ bound }}
    ),
    duplicated as (
        select {{ keys }} from candidates group by {{ keys }} having count(*) > 1
    )
    select *, 'duplicate_{{ key | join("_") }}' as broken_rules from candidates
    where ({{ keys }}) in (select ({{ keys }}) from duplicated)
{% endtest %}
