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

{#- With `recent_by` (a load-time column), only keys loaded in the last day are checked: a
    duplicate needs a new row, so this finds every duplicate a load can create (older keys
    were checked when they were loaded). With `within` (a time column of the key), the
    search for their twins is bounded to the time span of those new keys, so the cost stays
    flat as history grows; both bounds are literals, which prune old row groups/partitions. -#}
{% test unique_combination_of_columns(model, combination, recent_by=none, within=none) %}
    {%- set keys = combination | join(', ') %}
    select {{ keys }}, count(*) as occurrences
    from {{ model }}
    {% if recent_by -%}
    {%- set since = loaded_last_day_literal() -%}
    {%- set span = [none, none] -%}
    {%- if within and execute -%}
        {%- set span = run_query(
            "select min(" ~ within ~ "), max(" ~ within ~ ") from " ~ model
            ~ " where " ~ recent_by ~ " >= " ~ since
        ).rows[0] -%}
    {%- endif %}
    where ({{ keys }}) in (
        select ({{ keys }}) from {{ model }}
        where {{ recent_by }} >= {{ since }}
    )
    {%- if within %}
      and {{ within }} between {{ timestamp_literal(span[0]) }} and {{ timestamp_literal(span[1]) }}
    {%- endif %}
    {%- endif %}
    group by {{ keys }}
    having count(*) > 1
{% endtest %}
