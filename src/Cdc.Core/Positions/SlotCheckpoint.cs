using System.Text.Json;
using System.Text.Json.Serialization;

namespace Cdc.Positions;

/// <summary>
/// The connector's durable memory of a slot, kept in <c>Cdc:Kafka:CheckpointTopic</c> (compacted, key
/// <c>&lt;system id&gt;/&lt;database&gt;/&lt;slot&gt;</c>): the last position it confirmed and when that transaction
/// committed, and a relay from the table it has begun and not finished (<see cref="Pending"/>). A slot that is missing
/// while a checkpoint for it exists was lost, not never created.
/// </summary>
public sealed record SlotCheckpoint(
    string SystemId,
    string Database,
    string Slot,
    ulong ConfirmedLsn,
    DateTime? CommitTime,
    PendingTableRead? Pending = null)
{
    /// <summary>When this checkpoint was written (the connector's clock).</summary>
    public DateTime WrittenAt { get; init; } = DateTime.UtcNow;

    public string Key => KeyOf(SystemId, Database, Slot);

    public static string KeyOf(string systemId, string database, string slot) => $"{systemId}/{database}/{slot}";

    public byte[] ToJson() => JsonSerializer.SerializeToUtf8Bytes(this, CheckpointJson.Default.SlotCheckpoint);

    public static SlotCheckpoint? FromJson(ReadOnlySpan<byte> json) => FromJson(json, out _);

    /// <summary>The checkpoint, or null with the reason when the record cannot be read as one.</summary>
    public static SlotCheckpoint? FromJson(ReadOnlySpan<byte> json, out string? error)
    {
        error = null;
        try
        {
            if (JsonSerializer.Deserialize(json, CheckpointJson.Default.SlotCheckpoint) is { SystemId: not null, Database: not null, Slot: not null } checkpoint)
                return checkpoint;
            error = "it names no server, database or slot";
        }
        catch (JsonException e)
        {
            error = e.Message;
        }
        return null;
    }

    public override string ToString() =>
        $"LSN {new NpgsqlTypes.NpgsqlLogSequenceNumber(ConfirmedLsn)}" + (CommitTime is { } t ? $", committed {t:O}" : "") +
        $" (server {SystemId}, database {Database}, slot {Slot})";
}

/// <summary>
/// A relay of rows from the table that began and must be finished even after a crash: the initial snapshot, or the
/// backfill of a lost slot's gap (rows with <c>created_at</c> from <see cref="From"/>). While it is pending, the slot is
/// not confirmed past where it was created and the retention job keeps the rows it reads.
/// </summary>
public sealed record PendingTableRead(string Kind, DateTime? From)
{
    public const string Snapshot = "snapshot";
    public const string Backfill = "backfill";
}

[JsonSourceGenerationOptions(JsonSerializerDefaults.Web, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(SlotCheckpoint))]
sealed partial class CheckpointJson : JsonSerializerContext;
