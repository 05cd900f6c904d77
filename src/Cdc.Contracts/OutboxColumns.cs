namespace Cdc.Contracts;

/// <summary>
/// Column names of the outbox table: the connector's <c>Cdc:Postgres:Columns:*</c> and the writer's
/// <c>OutboxWriterOptions.Columns</c>, with the contract's names as defaults, so one configuration section can feed both.
/// Names are used exactly as written (quoted in SQL).
/// </summary>
public sealed class OutboxColumns
{
    public string Id { get; set; } = "id";
    public string AggregateType { get; set; } = "aggregate_type";
    public string AggregateId { get; set; } = "aggregate_id";
    public string EventType { get; set; } = "event_type";
    public string Payload { get; set; } = "payload";
    public string Headers { get; set; } = "headers";
    public string CreatedAt { get; set; } = "created_at";

    /// <summary>Each option's name (<c>Id</c>, <c>AggregateType</c>, …) and value, in the contract's column order, for validation messages.</summary>
    public IReadOnlyList<(string Option, string Value)> Named() =>
    [
        (nameof(Id), Id), (nameof(AggregateType), AggregateType), (nameof(AggregateId), AggregateId),
        (nameof(EventType), EventType), (nameof(Payload), Payload), (nameof(Headers), Headers), (nameof(CreatedAt), CreatedAt),
    ];
}
