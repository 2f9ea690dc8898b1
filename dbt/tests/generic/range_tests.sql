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

{% test unique_combination_of_columns(model, combination) %}
    select {{ combination | join(', ') }}, count(*) as occurrences
    from {{ model }}
    group by {{ combination | join(', ') }}
    having count(*) > 1
{% endtest %}
