{#- Amounts in the shop's reporting currency, so that orders in several currencies add up.

    vars:
      reporting_currency: the shop's currency (the simulator's shop.currency), default USD;
      currency_rates: {code: rate} for every other currency, the rate being units of that
        currency per unit of the reporting currency, as the simulator's shop.currencies
        gives it (deploy/local/pipeline passes them from the run's record).

    An amount in a currency without a rate converts to null, which the marts' not_null tests
    report: add its rate rather than let it drop out of a total. -#}

{% macro reporting_currency() -%}
    {%- set code = var('reporting_currency', 'USD') -%}
    {%- if not modules.re.match('^[A-Z]{3}$', code) -%}
        {{ exceptions.raise_compiler_error("var reporting_currency: '" ~ code ~ "' is not an ISO 4217 code") }}
    {%- endif -%}
    {{ return(code) }}
{%- endmacro %}

{% macro currency_rates() -%}
    {%- set rates = var('currency_rates', {}) or {} -%}
    {%- for code, rate in rates.items() -%}
        {%- if not modules.re.match('^[A-Z]{3}$', code | string) -%}
            {{ exceptions.raise_compiler_error("var currency_rates: '" ~ code ~ "' is not an ISO 4217 code") }}
        {%- endif -%}
        {%- if not modules.re.match('^[0-9]+(\.[0-9]+)?$', rate | string) or (rate | float) <= 0 -%}
            {{ exceptions.raise_compiler_error("var currency_rates: the rate of " ~ code ~ " is '" ~ rate ~ "', not a positive number") }}
        {%- endif -%}
    {%- endfor -%}
    {{ return(rates) }}
{%- endmacro %}

{#- `amount` (in `currency`) in the reporting currency, rounded to the cent. -#}
{% macro to_reporting(amount, currency) -%}
    cast(round(case {{ currency }}
        when '{{ reporting_currency() }}' then ({{ amount }})
        {%- for code, rate in currency_rates().items() %}
        when '{{ code }}' then ({{ amount }}) / {{ rate }}
        {%- endfor %}
    end, 2) as decimal(14, 2))
{%- endmacro %}
