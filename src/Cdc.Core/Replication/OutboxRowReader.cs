using Cdc.Mapping;
using Npgsql.Replication.PgOutput;
using Npgsql.Replication.PgOutput.Messages;

namespace Cdc.Replication;

/// <summary>Reads an Insert message of the outbox relation into an <see cref="OutboxRow"/>, column by column in order.</summary>
static class OutboxRowReader
{
    public static async ValueTask<OutboxRow> ReadAsync(InsertMessage insert, OutboxRelationLayout layout, CancellationToken ct)
    {
        var row = new OutboxRow { PayloadKind = layout.PayloadKind };
        var i = 0;
        await foreach (var value in insert.NewRow.WithCancellation(ct))
        {
            var column = i < layout.Columns.Length ? layout.Columns[i] : OutboxColumn.Other;
            i++;
            if (column == OutboxColumn.Other || value.IsDBNull)
                continue; // unread values are skipped by Npgsql
            switch (column)
            {
                case OutboxColumn.Id:
                    row.Id = layout.IdIsUuid ? (await value.Get<Guid>(ct)).ToString("D") : await value.Get<string>(ct);
                    break;
                case OutboxColumn.AggregateType:
                    row.AggregateType = await value.Get<string>(ct);
                    break;
                case OutboxColumn.AggregateId:
                    row.AggregateId = await value.Get<string>(ct);
                    break;
                case OutboxColumn.EventType:
                    row.EventType = await value.Get<string>(ct);
                    break;
                case OutboxColumn.Payload:
                    row.Payload = await ReadRawAsync(value, layout.PayloadIsJsonb, ct);
                    break;
                case OutboxColumn.Headers:
                    row.Headers = await ReadRawAsync(value, layout.HeadersIsJsonb, ct);
                    break;
                case OutboxColumn.CreatedAt:
                    row.CreatedAt = await value.Get<DateTime>(ct);
                    break;
            }
        }
        return row;
    }

    /// <summary>
    /// A column's bytes as the binary protocol sends them: bytea and json are the bytes themselves, jsonb is a
    /// version byte and then the JSON text in UTF-8. Read raw, without a string in between.
    /// </summary>
    static async ValueTask<byte[]> ReadRawAsync(ReplicationValue value, bool jsonb, CancellationToken ct)
    {
        var length = value.Length;
        await using var stream = value.GetStream();
        if (jsonb)
        {
            var version = stream.ReadByte();
            if (version != 1)
                throw new InvalidDataException($"Unsupported jsonb binary format version {version}");
            length--;
        }
        var bytes = GC.AllocateUninitializedArray<byte>(length);
        await stream.ReadExactlyAsync(bytes, ct);
        return bytes;
    }
}
