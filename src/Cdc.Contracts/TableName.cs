using System.Diagnostics.CodeAnalysis;
using System.Text;

namespace Cdc.Contracts;

/// <summary>
/// A schema-qualified table name as configured: <c>schema.table</c>, or <c>table</c> for <c>public</c>.
/// </summary>
/// <remarks>
/// Names are taken as written, case included: <c>Sales.Outbox</c> is the table <c>"Sales"."Outbox"</c> (psql would fold
/// it to <c>sales.outbox</c>), as the column names are. A name may be double-quoted as in SQL, which is needed only for a
/// name containing <c>.</c> or <c>"</c> (a quote inside doubled): <c>"my.schema"."a""b"</c> is schema <c>my.schema</c>,
/// table <c>a"b</c>. <see cref="Schema"/> and <see cref="Name"/> are the names as the catalog stores them.
/// </remarks>
public readonly record struct TableName(string Schema, string Name)
{
    public const string DefaultSchema = "public";

    /// <summary>Parses a configured name.</summary>
    /// <exception cref="FormatException">What is wrong (see <see cref="TryParse"/>).</exception>
    public static TableName Parse(string? value) =>
        TryParse(value, out var table, out var error) ? table : throw new FormatException(error);

    /// <summary>
    /// Parses a configured name, or says what is wrong without naming a configuration key (e.g. <c>is required</c>,
    /// <c>'a.b.c' must be 'schema.table' or 'table' (…)</c>): callers put theirs in front, as in
    /// <c>Cdc:Postgres:Table: 'a.b.c' must be …</c>.
    /// </summary>
    public static bool TryParse(string? value, out TableName table, [NotNullWhen(false)] out string? error)
    {
        try
        {
            table = ParseOrThrow(value);
            error = null;
            return true;
        }
        catch (FormatException e)
        {
            table = default;
            error = e.Message;
            return false;
        }
    }

    static TableName ParseOrThrow(string? value)
    {
        if (string.IsNullOrWhiteSpace(value))
            throw new FormatException("is required");
        var parts = new List<string>(2);
        var at = 0;
        while (true)
        {
            parts.Add(ReadName(value, ref at));
            if (at == value.Length)
                break;
            at++; // the '.' ReadName stopped at
        }
        return parts.Count switch
        {
            1 => new TableName(DefaultSchema, parts[0]),
            2 => new TableName(parts[0], parts[1]),
            _ => throw Invalid(value, "more than two names; double-quote a name that contains '.'"),
        };
    }

    /// <summary>The name quoted for SQL text: <c>"schema"."table"</c>, quotes inside doubled.</summary>
    public string Quoted => $"{SqlIdentifier.Quote(Schema)}.{SqlIdentifier.Quote(Name)}";

    /// <summary><c>schema.table</c>, a name double-quoted only where it contains <c>.</c> or <c>"</c>: <see cref="Parse"/> reads it back.</summary>
    public override string ToString() => $"{Written(Schema)}.{Written(Name)}";

    static string Written(string name) => name.Contains('.') || name.Contains('"') ? SqlIdentifier.Quote(name) : name;

    // One name from value[at]: quoted ("...", "" for a quote) or up to the next '.'; leaves at on the '.' or the end.
    static string ReadName(string value, ref int at)
    {
        var name = new StringBuilder();
        if (at < value.Length && value[at] == '"')
        {
            for (at++; ; at++)
            {
                if (at == value.Length)
                    throw Invalid(value, "a quoted name is not closed");
                if (value[at] != '"')
                    name.Append(value[at]);
                else if (at + 1 < value.Length && value[at + 1] == '"')
                    name.Append(value[++at]);
                else
                    break;
            }
            at++; // the closing quote
            if (at < value.Length && value[at] != '.')
                throw Invalid(value, "a quoted name must be followed by '.' or the end");
        }
        else
        {
            for (; at < value.Length && value[at] != '.'; at++)
            {
                if (value[at] == '"')
                    throw Invalid(value, "'\"' inside an unquoted name; double-quote the name and double the '\"'");
                name.Append(value[at]);
            }
        }
        if (string.IsNullOrWhiteSpace(name.ToString()))
            throw Invalid(value, "a name is empty");
        return name.ToString();
    }

    static FormatException Invalid(string value, string detail) =>
        new($"'{value}' must be 'schema.table' or 'table' ({detail})");
}
