namespace Cdc.Mapping;

/// <summary>How the payload column is stored, which decides the event's default content type.</summary>
public enum PayloadKind
{
    Json,
    Bytes,
}

/// <summary>One inserted outbox row, as read from the replication stream.</summary>
public sealed class OutboxRow
{
    public string Id { get; set; } = "";
    public string? AggregateType { get; set; }
    public string? AggregateId { get; set; }
    public string? EventType { get; set; }
    /// <summary>jsonb: the JSON text in UTF-8; bytea: the bytes.</summary>
    public byte[]? Payload { get; set; }
    public PayloadKind PayloadKind { get; set; }
    /// <summary>The row's headers column: JSON text in UTF-8, or null.</summary>
    public byte[]? Headers { get; set; }
    public DateTime? CreatedAt { get; set; }
    /// <summary>The values of the placed columns (<c>Cdc:Kafka:AdditionalPlacement</c>), in placement order; null when none are placed.</summary>
    public PlacedValue?[]? Placed { get; set; }
    /// <summary>Why a column could not be read, or null: such a row is dead-lettered with this reason.</summary>
    public string? ReadError { get; set; }
}

/// <summary>
/// The transaction a row was committed in, as the stream's Begin message tells it, and how the row was read. Rows read
/// from the table have no commit LSN (0).
/// </summary>
public readonly record struct TransactionInfo(ulong CommitLsn, uint Xid, DateTime CommitTime, Cdc.Outbox.V1.Origin Origin = Cdc.Outbox.V1.Origin.Wal);
