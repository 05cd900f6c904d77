using System.Buffers.Binary;
using System.Text;
using Cdc.Mapping;
using Cdc.Replication.PgOutput;

namespace Cdc.Replication;

/// <summary>
/// Reads an Insert message of the outbox relation into an <see cref="OutboxRow"/>, column by column in order. Every
/// value is read as the raw bytes of the binary protocol (a view of the message) and decoded here, so a value that cannot be decoded (a jsonb
/// version this code does not know, a timestamp outside what an event can carry, text that is not UTF-8) never leaves
/// the stream half-read: the row gets a <see cref="OutboxRow.ReadError"/> and is dead-lettered by the mapper.
/// </summary>
static class OutboxRowReader
{
    /// <summary>Reads the new tuple of an Insert message (after its relation id) into a row of the layout.</summary>
    public static OutboxRow Read(ref PgOutputReader insert, OutboxRelationLayout layout)
    {
        var row = NewRow(layout);
        var count = InsertMessage.ReadColumnCount(ref insert);
        for (var at = 0; at < count; at++)
        {
            var kind = insert.Byte();
            if (kind is InsertMessage.Null or InsertMessage.UnchangedToast)
            {
                if (Reads(layout, at))
                {
                    if (kind == InsertMessage.Null)
                        DecodeNull(row, at, layout);
                    else
                        row.ReadError ??= $"column {layout.ColumnNames[at]} arrived as an unchanged TOASTed value, without its value";
                }
                continue;
            }
            // Text or binary: a counted value (binary for every type with a binary form; the connector asks for binary).
            var value = insert.Take(insert.Int32());
            if (Reads(layout, at))
                Decode(row, at, value, layout);
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
        if (raw is null)
            DecodeNull(row, ordinal, layout);
        else
            Decode(row, ordinal, raw.AsSpan(), layout);
    }

    /// <summary>A SQL NULL in the column at this ordinal: placed columns get a value-less placement.</summary>
    static void DecodeNull(OutboxRow row, int ordinal, OutboxRelationLayout layout)
    {
        if (layout.PlacedAt[ordinal] is { } placed)
            foreach (var slot in placed)
                row.Placed![slot] = new PlacedValue(null);
    }

    /// <summary>Decodes the (non-NULL) value of the column at this ordinal into the row, copying what it keeps; never throws.</summary>
    static void Decode(OutboxRow row, int ordinal, ReadOnlySpan<byte> raw, OutboxRelationLayout layout)
    {
        var column = layout.Columns[ordinal];
        var placed = layout.PlacedAt[ordinal];
        if (column != OutboxColumn.Other)
            Decode(row, column, raw, layout);
        if (placed is not null)
            DecodePlaced(row, placed, layout.TypeIds[ordinal], raw, layout.ColumnNames[ordinal]);
    }

    /// <summary>Decodes a placed column's binary value into the row's placed values, or records why it cannot be.</summary>
    public static void DecodePlaced(OutboxRow row, int[] slots, uint typeOid, ReadOnlySpan<byte> raw, string columnName)
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
    public static void Decode(OutboxRow row, OutboxColumn column, ReadOnlySpan<byte> raw, OutboxRelationLayout layout)
    {
        try
        {
            switch (column)
            {
                case OutboxColumn.Id:
                    row.Id = layout.IdIsUuid ? new Guid(Exactly(raw, 16), bigEndian: true).ToString("D") : Text(raw);
                    break;
                case OutboxColumn.AggregateType:
                    row.AggregateType = layout.AggregateTypes.Text(raw);
                    break;
                case OutboxColumn.AggregateId:
                    row.AggregateId = Text(raw);
                    break;
                case OutboxColumn.EventType:
                    row.EventType = layout.EventTypes.Text(raw);
                    break;
                case OutboxColumn.Payload:
                    row.Payload = layout.PayloadIsJsonb ? JsonbText(raw) : raw.ToArray();
                    break;
                case OutboxColumn.Headers:
                    row.Headers = layout.HeadersIsJsonb ? JsonbText(raw) : raw.ToArray();
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

    /// <summary>UTF-8 that refuses invalid bytes (a text value that is not UTF-8 is a read error, not replacement characters).</summary>
    internal static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    internal static string Text(ReadOnlySpan<byte> raw) => StrictUtf8.GetString(raw);

    /// <summary>The value, when it has exactly the length of its type's binary form.</summary>
    internal static ReadOnlySpan<byte> Exactly(ReadOnlySpan<byte> raw, int length) =>
        raw.Length == length ? raw : throw new InvalidDataException($"expected {length} bytes, got {raw.Length}");

    /// <summary>jsonb's binary form: a version byte (1) and the JSON text in UTF-8. Returns a copy of the text.</summary>
    internal static byte[] JsonbText(ReadOnlySpan<byte> raw)
    {
        if (raw.Length == 0 || raw[0] != 1)
            throw new InvalidDataException($"unsupported jsonb binary format version {(raw.Length == 0 ? "(none)" : raw[0])}");
        return raw[1..].ToArray();
    }

    static readonly DateTime PostgresEpoch = new(2000, 1, 1, 0, 0, 0, DateTimeKind.Utc);

    /// <summary>timestamptz's binary form: microseconds since 2000-01-01 UTC; infinity is long.MaxValue/MinValue.</summary>
    internal static DateTime TimestampTz(ReadOnlySpan<byte> raw, string what = "created_at")
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
