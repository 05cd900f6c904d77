using System.Text;
using Cdc.Mapping;
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
                    row.Payload = layout.PayloadKind == PayloadKind.Bytes
                        ? await value.Get<byte[]>(ct)
                        : Encoding.UTF8.GetBytes(await value.Get<string>(ct));
                    break;
                case OutboxColumn.Headers:
                    row.HeadersJson = await value.Get<string>(ct);
                    break;
                case OutboxColumn.CreatedAt:
                    row.CreatedAt = await value.Get<DateTime>(ct);
                    break;
            }
        }
        return row;
    }
}
