using Cdc.Configuration;
using Cdc.Mapping;
using Npgsql.Replication.PgOutput.Messages;

namespace Cdc.Replication;

/// <summary>What a column of the outbox relation holds.</summary>
enum OutboxColumn : byte
{
    Other,
    Id,
    AggregateType,
    AggregateId,
    EventType,
    Payload,
    Headers,
    CreatedAt,
}

/// <summary>
/// The outbox table as the stream's Relation message describes it: the role of each column by ordinal, so rows are
/// read in one pass without looking names up per row, and whether the payload is JSON or bytes.
/// </summary>
sealed class OutboxRelationLayout
{
    // Built-in type OIDs (pg_type.h); stable across PostgreSQL versions.
    public const uint UuidOid = 2950, JsonbOid = 3802, ByteaOid = 17;

    public OutboxColumn[] Columns { get; }
    public bool IdIsUuid { get; }
    public PayloadKind PayloadKind { get; }
    /// <summary>jsonb's binary form starts with a version byte before the JSON text.</summary>
    public bool PayloadIsJsonb { get; private init; }
    public bool HeadersIsJsonb { get; private init; }

    OutboxRelationLayout(OutboxColumn[] columns, bool idIsUuid, PayloadKind payloadKind)
    {
        Columns = columns;
        IdIsUuid = idIsUuid;
        PayloadKind = payloadKind;
    }

    /// <summary>The layout when the relation is the outbox table, otherwise null (other tables are ignored).</summary>
    public static OutboxRelationLayout? For(RelationMessage relation, TableName table, OutboxColumns names)
    {
        if (relation.Namespace != table.Schema || relation.RelationName != table.Name)
            return null;

        var columns = new OutboxColumn[relation.Columns.Count];
        var idIsUuid = false;
        var payloadKind = PayloadKind.Json;
        var payloadIsJsonb = false;
        var headersIsJsonb = false;
        for (var i = 0; i < columns.Length; i++)
        {
            var column = relation.Columns[i];
            var name = column.ColumnName;
            columns[i] = name == names.Id ? OutboxColumn.Id
                : name == names.AggregateType ? OutboxColumn.AggregateType
                : name == names.AggregateId ? OutboxColumn.AggregateId
                : name == names.EventType ? OutboxColumn.EventType
                : name == names.Payload ? OutboxColumn.Payload
                : name == names.Headers ? OutboxColumn.Headers
                : name == names.CreatedAt ? OutboxColumn.CreatedAt
                : OutboxColumn.Other;
            if (columns[i] == OutboxColumn.Headers)
                headersIsJsonb = column.DataTypeId == JsonbOid;
            if (columns[i] == OutboxColumn.Id)
                idIsUuid = column.DataTypeId == UuidOid;
            if (columns[i] == OutboxColumn.Payload)
            {
                payloadKind = column.DataTypeId == ByteaOid ? PayloadKind.Bytes : PayloadKind.Json;
                payloadIsJsonb = column.DataTypeId == JsonbOid;
            }
        }
        return new OutboxRelationLayout(columns, idIsUuid, payloadKind) { PayloadIsJsonb = payloadIsJsonb, HeadersIsJsonb = headersIsJsonb };
    }
}
