namespace Cdc.Configuration;

/// <summary>A schema-qualified table name, as configured (<c>schema.table</c> or <c>table</c> for <c>public</c>).</summary>
public readonly record struct TableName(string Schema, string Name)
{
    public static TableName Parse(string value, string key)
    {
        if (string.IsNullOrWhiteSpace(value))
            throw new CdcConfigurationException(key, "is required");
        var parts = value.Split('.');
        var (schema, name) = parts.Length switch
        {
            1 => ("public", parts[0]),
            2 => (parts[0], parts[1]),
            _ => throw new CdcConfigurationException(key, $"'{value}' must be 'schema.table' or 'table'"),
        };
        if (schema.Length == 0 || name.Length == 0 || schema.Contains('"') || name.Contains('"'))
            throw new CdcConfigurationException(key, $"'{value}' must be 'schema.table' or 'table'");
        return new TableName(schema, name);
    }

    /// <summary>The name quoted for SQL text.</summary>
    public string Quoted => $"\"{Schema}\".\"{Name}\"";

    public override string ToString() => $"{Schema}.{Name}";
}
