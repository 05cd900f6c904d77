using System.Buffers.Binary;
using System.Text;
using Cdc.Mapping;
using Npgsql.Replication.PgOutput;
using Npgsql.Replication.PgOutput.Messages;

namespace Cdc.Replication;

/// <summary>
/// Reads an Insert message of the outbox relation into an <see cref="OutboxRow"/>, column by column in order. Every
/// value is read as the raw bytes of the binary protocol and decoded here, so a value that cannot be decoded (a jsonb
/// version this code does not know, a timestamp outside what an event can carry, text that is not UTF-8) never leaves
/// the stream half-read: the row gets a <see cref="OutboxRow.ReadError"/> and is dead-lettered by the mapper.
/// </summary>
static class OutboxRowReader
{
    public static async ValueTask<OutboxRow> ReadAsync(InsertMessage insert, OutboxRelationLayout layout, CancellationToken ct)
    {
        var row = NewRow(layout);
        var ordinal = 0;
        await foreach (var value in insert.NewRow.WithCancellation(ct))
        {
            var at = ordinal++;
            if (!Reads(layout, at))
                continue; // unread values are skipped by Npgsql
            Decode(row, at, value.IsDBNull ? null : await ReadRawAsync(value, ct), layout);
        }
        return row;
    }

    /// <summary>An empty row for the layout.</summary>
    public static OutboxRow NewRow(OutboxRelationLayout layout) => new()
    {
        PayloadKind = layout.PayloadKind,
        Placed = layout.PlacementCount > 0 ? new PlacedValue?[layout.PlacementCount] : null,
    };

    /// <summary>Whether the column at this ordinal is one the row needs (a configured or a placed one).</summary>
    public static bool Reads(OutboxRelationLayout layout, int ordinal) =>
        ordinal < layout.Columns.Length && (layout.Columns[ordinal] != OutboxColumn.Other || layout.PlacedAt[ordinal] is not null);

    /// <summary>Decodes the value of the column at this ordinal (null: SQL NULL) into the row; never throws.</summary>
    public static void Decode(OutboxRow row, int ordinal, byte[]? raw, OutboxRelationLayout layout)
    {
        var column = layout.Columns[ordinal];
        var placed = layout.PlacedAt[ordinal];
        if (raw is null)
        {
            if (placed is not null)
                foreach (var slot in placed)
                    row.Placed![slot] = new PlacedValue(null);
            return;
        }
        if (column != OutboxColumn.Other)
            Decode(row, column, raw, layout);
        if (placed is not null)
            DecodePlaced(row, placed, layout.TypeIds[ordinal], raw, layout.ColumnNames[ordinal]);
    }

    /// <summary>Decodes a placed column's binary value into the row's placed values, or records why it cannot be.</summary>
    public static void DecodePlaced(OutboxRow row, int[] slots, uint typeOid, byte[] raw, string columnName)
    {
        try
        {
            var value = PlacedColumns.Decode(typeOid, raw);
            foreach (var slot in slots)
                row.Placed![slot] = value;
        }
        catch (Exception e) when (e is InvalidDataException or ArgumentException or DecoderFallbackException)
        {
            row.ReadError ??= $"placed column {columnName} could not be read: {e.Message}";
        }
    }

    /// <summary>Decodes one column's binary value into the row, or records why it cannot be.</summary>
    public static void Decode(OutboxRow row, OutboxColumn column, byte[] raw, OutboxRelationLayout layout)
    {
        try
        {
            switch (column)
            {
                case OutboxColumn.Id:
                    row.Id = layout.IdIsUuid ? new Guid(Exactly(raw, 16), bigEndian: true).ToString("D") : Text(raw);
                    break;
                case OutboxColumn.AggregateType:
                    row.AggregateType = Text(raw);
                    break;
                case OutboxColumn.AggregateId:
                    row.AggregateId = Text(raw);
                    break;
                case OutboxColumn.EventType:
                    row.EventType = Text(raw);
                    break;
                case OutboxColumn.Payload:
                    row.Payload = layout.PayloadIsJsonb ? JsonbText(raw) : raw;
                    break;
                case OutboxColumn.Headers:
                    row.Headers = layout.HeadersIsJsonb ? JsonbText(raw) : raw;
                    break;
                case OutboxColumn.CreatedAt:
                    row.CreatedAt = TimestampTz(Exactly(raw, 8));
                    break;
            }
        }
        catch (Exception e) when (e is InvalidDataException or ArgumentException or DecoderFallbackException)
        {
            row.ReadError ??= $"column {column} could not be read: {e.Message}";
        }
    }

    static async ValueTask<byte[]> ReadRawAsync(ReplicationValue value, CancellationToken ct)
    {
        var bytes = GC.AllocateUninitializedArray<byte>(value.Length);
        await using var stream = value.GetStream();
        await stream.ReadExactlyAsync(bytes, ct);
        return bytes;
    }

    static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    static string Text(byte[] raw) => StrictUtf8.GetString(raw);

    static byte[] Exactly(byte[] raw, int length) =>
        raw.Length == length ? raw : throw new InvalidDataException($"expected {length} bytes, got {raw.Length}");

    /// <summary>jsonb's binary form: a version byte (1) and the JSON text in UTF-8.</summary>
    internal static byte[] JsonbText(byte[] raw)
    {
        if (raw.Length == 0 || raw[0] != 1)
            throw new InvalidDataException($"unsupported jsonb binary format version {(raw.Length == 0 ? "(none)" : raw[0])}");
        return raw[1..];
    }

    static readonly DateTime PostgresEpoch = new(2000, 1, 1, 0, 0, 0, DateTimeKind.Utc);

    /// <summary>timestamptz's binary form: microseconds since 2000-01-01 UTC; infinity is long.MaxValue/MinValue.</summary>
    internal static DateTime TimestampTz(byte[] raw, string what = "created_at")
    {
        var micros = BinaryPrimitives.ReadInt64BigEndian(raw);
        if (micros is long.MaxValue or long.MinValue)
            throw new InvalidDataException($"{what} is infinity");
        var fromEpoch = (DateTime.MaxValue - PostgresEpoch).Ticks / 10;
        var toEpoch = (PostgresEpoch - DateTime.MinValue).Ticks / 10;
        if (micros > fromEpoch || micros < -toEpoch)
            throw new InvalidDataException($"{what} is outside the years 1 to 9999 that an event's timestamp can carry");
        return PostgresEpoch.AddTicks(micros * 10);
    }
}
