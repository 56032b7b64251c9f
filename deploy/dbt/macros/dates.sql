{#- Date arithmetic that the two targets spell differently, dispatched per adapter. -#}

{#- The ISO day of the week of a date: 1 = Monday ... 7 = Sunday. -#}
{% macro iso_day_of_week(date_expr) %}
    {{ return(adapter.dispatch('iso_day_of_week', 'retail')(date_expr)) }}
{% endmacro %}

{% macro default__iso_day_of_week(date_expr) -%}
    isodow({{ date_expr }})
{%- endmacro %}

{#- DATEPART(weekday) depends on the session's DATEFIRST; normalised to Monday = 1. -#}
{% macro synapse__iso_day_of_week(date_expr) -%}
    ((datepart(weekday, {{ date_expr }}) + @@datefirst - 2) % 7 + 1)
{%- endmacro %}

{#- The name of the month of a date. -#}
{% macro month_name(date_expr) %}
    {{ return(adapter.dispatch('month_name', 'retail')(date_expr)) }}
{% endmacro %}

{% macro default__month_name(date_expr) -%}
    monthname({{ date_expr }})
{%- endmacro %}

{% macro synapse__month_name(date_expr) -%}
    datename(month, {{ date_expr }})
{%- endmacro %}

{#- The integer key yyyymmdd of a date or timestamp (year(), month() and day() exist in both). -#}
{% macro date_key(expr) -%}
    (year({{ expr }}) * 10000 + month({{ expr }}) * 100 + day({{ expr }}))
{%- endmacro %}

{#- The integers 0 .. count - 1 as column `n`, from cross-joined digits: plain subqueries,
    since T-SQL allows no WITH nested in a CTE (as dbt.generate_series produces). -#}
{% macro numbers(count) -%}
{%- set places = (count | string | length) -%}
select {% for place in range(places) %}{{ ' + ' if not loop.first }}{{ 10 ** place }} * d{{ place }}.digit{% endfor %} as n
from {% for place in range(places) -%}
    {{ ' cross join ' if not loop.first }}(select 0 as digit union all select 1 union all select 2 union all select 3 union all select 4
     union all select 5 union all select 6 union all select 7 union all select 8 union all select 9) as d{{ place }}
{%- endfor %}
where {% for place in range(places) %}{{ ' + ' if not loop.first }}{{ 10 ** place }} * d{{ place }}.digit{% endfor %} < {{ count }}
{%- endmacro %}
