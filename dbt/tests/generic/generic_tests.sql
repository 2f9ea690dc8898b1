{#- Our own generic tests (no dbt hub packages offline). Each returns the failing rows,
    whole (`select *`), so a stored failure names the lake file it came from; nulls pass, as
    in dbt's built-ins: not_null says whether a column may be null. -#}

{% test positive(model, column_name) %}
    select * from {{ model }}
    where {{ column_name }} <= 0
{% endtest %}

{% test at_least(model, column_name, min_value) %}
    select * from {{ model }}
    where {{ column_name }} < {{ min_value }}
{% endtest %}

{% test between(model, column_name, min_value, max_value) %}
    select * from {{ model }}
    where {{ column_name }} < {{ min_value }} or {{ column_name }} > {{ max_value }}
{% endtest %}

{#- Like dbt's accepted_values, but returning the rows themselves (see above). -#}
{% test one_of(model, column_name, values) %}
    select * from {{ model }}
    where {{ column_name }} not in (
        {%- for value in values %}'{{ value }}'{{ ", " if not loop.last }}{% endfor -%}
    )
{% endtest %}

{#- Every row where `expression` does not hold (an invariant between columns of a row). -#}
{% test expression_is_true(model, expression) %}
    select * from {{ model }}
    where not ({{ expression }})
{% endtest %}

{#- Rows sharing a key. With `new_rows_only`, only keys of rows this build added (`load_seq` above the last
    successful build's) are checked: a duplicate needs a new row, so this finds every
    duplicate a build can create. With `within` (a time column of the key), the search for
    their twins is bounded to the time span of those new keys, so the cost stays flat as
    history grows; both bounds are literals, which prune old row groups/partitions. Failing
    rows are returned whole. -#}
{% test no_duplicate_keys(model, key, new_rows_only=false, within=none) %}
    {%- set keys = key | join(', ') %}
    {%- set bound = 'true' %}
    {%- if new_rows_only %}
        {%- set after = tests_after_seq() %}
        {%- set bound = '(' ~ keys ~ ') in (select (' ~ keys ~ ') from ' ~ model ~ ' where load_seq > ' ~ after ~ ')' %}
        {%- if within and execute %}
            {%- set span = run_query(
                "select min(" ~ within ~ "), max(" ~ within ~ ") from " ~ model
                ~ " where load_seq > " ~ after
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
    select * from candidates
    where ({{ keys }}) in (select ({{ keys }}) from duplicated)
{% endtest %}
