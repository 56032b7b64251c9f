{#- The incremental watermark: the latest source load time the model already holds, or the
    distant past while it holds nothing (max() of no rows is null, and `> null` is never
    true: a model first built on empty sources would otherwise never take a row). -#}
{% macro watermark() -%}
    coalesce((select max(source_loaded_at) from {{ this }}), cast('1900-01-01' as {{ dbt.type_timestamp() }}))
{%- endmacro %}
