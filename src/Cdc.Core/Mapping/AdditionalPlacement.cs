using Cdc.Configuration;

namespace Cdc.Mapping;

/// <summary>Where a placed column's value goes on the record.</summary>
public enum PlacementTarget
{
    /// <summary>A header, named by the alias (or the column's name).</summary>
    Header,
    /// <summary>The record's partition: the value must be an integer.</summary>
    Partition,
}

/// <summary>One entry of <c>Cdc:Kafka:AdditionalPlacement</c>: a column of the outbox table and where its value goes.</summary>
public sealed record Placement(string Column, PlacementTarget Target, string HeaderName);

/// <summary>The value of a placed column as read from a row: its text (null for SQL NULL) and, for integer columns, the number.</summary>
public readonly record struct PlacedValue(string? Text, long? Integer = null);

/// <summary>
/// Parses <c>Cdc:Kafka:AdditionalPlacement</c>, Debezium's <c>table.fields.additional.placement</c> syntax:
/// <c>column:header[:alias]</c> or <c>column:partition</c>, comma-separated (spaces around entries and parts ignored).
/// Column names are taken as written, case included, as <c>Cdc:Postgres:Columns:*</c> are. Whether each column exists
/// and has a type that can be placed is checked against the table at start.
/// </summary>
public static class AdditionalPlacement
{
    public const string Key = "Cdc:Kafka:AdditionalPlacement";

    public static IReadOnlyList<Placement> Parse(string? value, ValueFormat format = ValueFormat.OutboxEvent)
    {
        if (string.IsNullOrWhiteSpace(value))
            return [];
        var placements = new List<Placement>();
        foreach (var entry in value.Split(',', StringSplitOptions.TrimEntries))
        {
            var parts = entry.Split(':', StringSplitOptions.TrimEntries);
            if (entry.Length == 0 || parts.Length is < 2 or > 3 || parts.Any(p => p.Length == 0))
                throw Invalid(value, $"'{entry}' must be 'column:header', 'column:header:alias' or 'column:partition'");
            var (column, target) = (parts[0], parts[1]);
            switch (target.ToLowerInvariant())
            {
                case "header":
                    var name = parts.Length == 3 ? parts[2] : column;
                    if (name == HeaderNames.Id || (format == ValueFormat.OutboxEvent && name == HeaderNames.EventType))
                        throw Invalid(value, $"'{entry}' places a header named '{name}', which the connector sets itself");
                    if (placements.Any(p => p.Target == PlacementTarget.Header && p.HeaderName == name))
                        throw Invalid(value, $"header '{name}' is placed twice");
                    placements.Add(new Placement(column, PlacementTarget.Header, name));
                    break;
                case "partition":
                    if (parts.Length == 3)
                        throw Invalid(value, $"'{entry}': a partition placement takes no alias");
                    if (placements.Any(p => p.Target == PlacementTarget.Partition))
                        throw Invalid(value, "more than one column is placed as the partition");
                    placements.Add(new Placement(column, PlacementTarget.Partition, ""));
                    break;
                case "envelope":
                    throw Invalid(value, $"'{entry}': 'envelope' places a field in Debezium's value envelope, which these " +
                                         "records do not have; use 'header' (or 'partition')");
                default:
                    throw Invalid(value, $"'{entry}': '{target}' is not a placement; use 'header' or 'partition'");
            }
        }
        return placements;
    }

    static CdcConfigurationException Invalid(string value, string problem) => new(Key, $"'{value}': {problem}");
}
