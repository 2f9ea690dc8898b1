{#- Our own generic tests (no dbt hub packages offline). Each returns the failing rows;
    nulls pass, as in dbt's built-ins: not_null says whether a column may be null. -#}

{% test positive(model, column_name) %}
    select {{ column_name }} from {{ model }}
    where {{ column_name }} <= 0
{% endtest %}

{% test at_least(model, column_name, min_value) %}
    select {{ column_name }} from {{ model }}
    where {{ column_name }} < {{ min_value }}
{% endtest %}

{% test between(model, column_name, min_value, max_value) %}
    select {{ column_name }} from {{ model }}
    where {{ column_name }} < {{ min_value }} or {{ column_name }} > {{ max_value }}
{% endtest %}

{#- With `recent_by` (a load-time column), only keys loaded in the last day are checked,
    against the whole table: a duplicate needs a new row, so this finds every duplicate a
    load can create while the cost stays flat as history grows (older keys were checked
    when they were loaded). -#}
{% test unique_combination_of_columns(model, combination, recent_by=none) %}
    {%- set keys = combination | join(', ') %}
    select {{ keys }}, count(*) as occurrences
    from {{ model }}
    {% if recent_by -%}
    {%- set since = none -%}
    {%- if execute -%}
        {%- set since = run_query(
            "select " ~ minutes_before("max(" ~ recent_by ~ ")", 24 * 60) ~ " from " ~ model
        ).columns[0].values()[0] -%}
    {%- endif %}
    -- the bound is a literal, so only recent row groups are read for the new keys
    where ({{ keys }}) in (
        select ({{ keys }}) from {{ model }}
        where {{ recent_by }} >= {{ timestamp_literal(since) }}
    )
    {%- endif %}
    group by {{ keys }}
    having count(*) > 1
{% endtest %}
