namespace Cdc.Contracts;

/// <summary>PostgreSQL identifiers in SQL text.</summary>
public static class SqlIdentifier
{
    /// <summary>The identifier double-quoted, quotes inside doubled: used exactly as given, case included.</summary>
    public static string Quote(string identifier)
    {
        ArgumentNullException.ThrowIfNull(identifier);
        return $"\"{identifier.Replace("\"", "\"\"")}\"";
    }
}
