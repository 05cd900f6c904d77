namespace Cdc.Outbox;

/// <summary>
/// A table name as the connector parses <c>Cdc:Postgres:Table</c> (<c>schema.table</c>, or <c>table</c> for
/// <c>public</c>; names are taken as written, case included), so the writer and the relay mean the same table.
/// </summary>
readonly record struct OutboxTableName(string Schema, string Name)
{
    public static OutboxTableName Parse(string? value)
    {
        if (string.IsNullOrWhiteSpace(value))
            throw new ArgumentException("OutboxWriterOptions.Table is required", "Table");
        var parts = value.Split('.');
        var (schema, name) = parts.Length switch
        {
            1 => ("public", parts[0]),
            2 => (parts[0], parts[1]),
            _ => ("", ""),
        };
        if (schema.Length == 0 || name.Length == 0 || schema.Contains('"') || name.Contains('"'))
            throw new ArgumentException($"OutboxWriterOptions.Table '{value}' must be 'schema.table' or 'table'", "Table");
        return new OutboxTableName(schema, name);
    }

    public string Quoted => $"{Sql.Quote(Schema)}.{Sql.Quote(Name)}";

    public override string ToString() => $"{Schema}.{Name}";
}

static class Sql
{
    /// <summary>An identifier quoted for SQL text: names are used exactly as configured.</summary>
    public static string Quote(string identifier) => $"\"{identifier.Replace("\"", "\"\"")}\"";
}
