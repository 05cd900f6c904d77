using Cdc.Configuration;
using Cdc.Outbox.V1;

namespace Cdc.Mapping;

/// <summary>
/// How events become records beyond topic and key: the value (<c>Cdc:Kafka:ValueFormat</c>) and the columns placed in
/// headers or as the partition (<c>Cdc:Kafka:AdditionalPlacement</c>).
/// </summary>
public sealed class RecordFormat
{
    public static readonly RecordFormat Default = new();

    public ValueFormat Value { get; init; } = ValueFormat.OutboxEvent;
    public IReadOnlyList<Placement> Placements { get; init; } = [];
    /// <summary>The table's column names: a placed column that is one of the event's own has a value for table-less events too.</summary>
    public OutboxColumns Columns { get; init; } = new();

    public static RecordFormat From(CdcOptions options) => new()
    {
        Value = options.Kafka.ValueFormat,
        Placements = AdditionalPlacement.Parse(options.Kafka.AdditionalPlacement, options.Kafka.ValueFormat),
        Columns = options.Postgres.Columns,
    };

    /// <summary>
    /// The placed values of an event that has no row (a <c>pg_logical_emit_message</c> event): columns that hold one of the
    /// event's fields take it; other columns are absent (no header, the key's partition).
    /// </summary>
    public PlacedValue?[] PlacedOf(OutboxEvent evt)
    {
        var placed = new PlacedValue?[Placements.Count];
        for (var i = 0; i < placed.Length; i++)
        {
            var column = Placements[i].Column;
            placed[i] = column == Columns.Id ? new PlacedValue(evt.Id)
                : column == Columns.AggregateType ? new PlacedValue(evt.AggregateType)
                : column == Columns.AggregateId ? new PlacedValue(evt.AggregateId)
                : column == Columns.EventType ? new PlacedValue(evt.EventType)
                : column == Columns.CreatedAt && evt.CreatedAt is { } created ? new PlacedValue(PlacedValues.Timestamp(created.ToDateTime()))
                : null;
        }
        return placed;
    }
}

/// <summary>How placed values are written as header text.</summary>
public static class PlacedValues
{
    /// <summary>ISO 8601 in UTC with the microseconds PostgreSQL keeps (trailing zeros dropped), as Debezium's ZonedTimestamp.</summary>
    public static string Timestamp(DateTime utc) =>
        utc.ToString("yyyy-MM-dd'T'HH:mm:ss.FFFFFF'Z'", System.Globalization.CultureInfo.InvariantCulture);
}
