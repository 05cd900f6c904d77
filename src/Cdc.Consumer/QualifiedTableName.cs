namespace Cdc.Consumer;

/// <summary>A table name as the connector reads its options: <c>schema.table</c>, or <c>table</c> for <c>public</c>, taken as written.</summary>
readonly record struct QualifiedTableName(string Schema, string Name)
{
    public static QualifiedTableName Parse(string? value, string what)
    {
        var parts = (value ?? "").Split('.');
        var (schema, name) = parts.Length switch
        {
            1 => ("public", parts[0]),
            2 => (parts[0], parts[1]),
            _ => ("", ""),
        };
        if (string.IsNullOrWhiteSpace(schema) || string.IsNullOrWhiteSpace(name) || schema.Contains('"') || name.Contains('"'))
            throw new ArgumentException($"{what} '{value}' must be 'schema.table' or 'table'");
        return new QualifiedTableName(schema, name);
    }

    public string Quoted => $"\"{Schema}\".\"{Name}\"";

    public override string ToString() => $"{Schema}.{Name}";
}
