{#- Our own generic tests (no dbt hub packages offline). Each returns the failing rows,
    whole (`select *`) with the rule they break (`broken_rules`), so a stored failure names
    the lake file it came from and why; nulls pass, as in dbt's built-ins: not_null says
    whether a column may be null. -#}

{#- Every row that breaks one of `rules` (name: a condition each row must meet), in one
    scan of the table however many rules there are: a build runs one test node instead of one
    per rule (each node costs dbt about 25-60 ms here, more for a stored failure than its
    query). A rule whose condition is null for a row (a null column) passes, as dbt's
    built-ins do. Each failing row carries `broken_rules`, the names of the rules it breaks,
    which the build's dead letters give as their reason.
    With `unique_key` the same node also returns the rows sharing a key with a new row (as
    `no_duplicate_keys` below, whose arguments it takes): one node a model instead of two, 25
    to 40 ms less a tick each on DuckDB and one statement less on BigQuery. The rows to check
    are then chosen here (`new_rows_only`), not by a `where` config: the twins of a new row
    may be old rows, which a `where` on the model would hide. -#}
{% test row_rules(model, rules, unique_key=none, new_rows_only=false, within=none) %}
    {%- set checks = [] %}
    {%- for name, condition in rules.items() %}
        {%- do checks.append("case when not (" ~ condition ~ ") then '" ~ name ~ " ' else '' end") %}
    {%- endfor %}
    {%- if unique_key and config.get('where') %}
        {{ exceptions.raise_compiler_error("row_rules with a unique_key chooses its rows itself (new_rows_only); drop the where config") }}
    {%- endif %}
    {%- set checked_rows = loaded_after(tests_after_seq(), within) if new_rows_only else 'true' %}
    with checked as (
        select *, trim({{ dbt.concat(checks) }}) as broken_rules
        from {{ model }}
        where {{ checked_rows }}
    )
    select * from checked
    where broken_rules != ''
    {%- if unique_key %}
    union all
    {{ duplicate_rows(model, unique_key, new_rows_only, within) }}
    {%- endif %}
{% endtest %}

{#- Rows sharing a key. With `new_rows_only`, only keys of rows this build added (`load_seq` above the last
    successful build's) are checked: a duplicate needs a new row, so this finds every
    duplicate a build can create. With `within` (a time column of the key), the search for
    their twins is bounded to the time span of those new keys, so the cost stays flat as
    history grows; both bounds are literals, which prune old row groups/partitions. Failing
    rows are returned whole, their broken rule `duplicate_<key columns>`. -#}
{% test no_duplicate_keys(model, key, new_rows_only=false, within=none) %}
    {{ duplicate_rows(model, key, new_rows_only, within) }}
{% endtest %}
