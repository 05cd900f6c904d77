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
/// The outbox table as a Relation message of the stream describes it: the role of each column by ordinal, so rows are
/// read in one pass without looking names up per row, and the types that decide how each value is decoded.
/// </summary>
sealed class OutboxRelationLayout
{
    // Built-in type OIDs (pg_type.h); stable across PostgreSQL versions.
    public const uint UuidOid = 2950, JsonbOid = 3802, JsonOid = 114, ByteaOid = 17, TimestampTzOid = 1184;

    OutboxRelationLayout(OutboxColumn[] columns) => Columns = columns;

    public OutboxColumn[] Columns { get; }
    public bool IdIsUuid { get; private set; }
    public PayloadKind PayloadKind { get; private set; }
    /// <summary>jsonb's binary form starts with a version byte before the JSON text.</summary>
    public bool PayloadIsJsonb { get; private set; }
    public bool HeadersIsJsonb { get; private set; }

    /// <summary>
    /// The layout of an outbox relation, or throws when the relation lacks a configured column or has one of a type
    /// the connector cannot read (the table changed under the stream: rows read with a wrong layout would be lost).
    /// </summary>
    public static OutboxRelationLayout For(RelationMessage relation, OutboxColumns names) =>
        For([.. relation.Columns.Select(c => (c.ColumnName, c.DataTypeId))], $"{relation.Namespace}.{relation.RelationName}", names);

    /// <summary>
    /// The layout of columns given by name and type OID, in the order their values come (a Relation message's, or a
    /// query's select list); throws like the overload above.
    /// </summary>
    public static OutboxRelationLayout For(IReadOnlyList<(string Name, uint DataTypeId)> relationColumns, string relationName, OutboxColumns names)
    {
        var columns = new OutboxColumn[relationColumns.Count];
        var layout = new OutboxRelationLayout(columns);
        var found = new HashSet<OutboxColumn>();
        for (var i = 0; i < columns.Length; i++)
        {
            var column = relationColumns[i];
            var name = column.Name;
            var role = name == names.Id ? OutboxColumn.Id
                : name == names.AggregateType ? OutboxColumn.AggregateType
                : name == names.AggregateId ? OutboxColumn.AggregateId
                : name == names.EventType ? OutboxColumn.EventType
                : name == names.Payload ? OutboxColumn.Payload
                : names.Headers.Length > 0 && name == names.Headers ? OutboxColumn.Headers
                : name == names.CreatedAt ? OutboxColumn.CreatedAt
                : OutboxColumn.Other;
            columns[i] = role;
            found.Add(role);
            switch (role)
            {
                case OutboxColumn.Id:
                    layout.IdIsUuid = column.DataTypeId == UuidOid;
                    break;
                case OutboxColumn.Payload:
                    layout.PayloadKind = column.DataTypeId == ByteaOid ? PayloadKind.Bytes : PayloadKind.Json;
                    layout.PayloadIsJsonb = column.DataTypeId == JsonbOid;
                    break;
                case OutboxColumn.Headers:
                    layout.HeadersIsJsonb = column.DataTypeId == JsonbOid;
                    break;
                case OutboxColumn.CreatedAt when column.DataTypeId != TimestampTzOid:
                    throw new InvalidDataException(
                        $"column {relationName}.{name} is no longer timestamptz (type oid {column.DataTypeId})");
            }
        }

        var missing = new List<string>();
        void Require(OutboxColumn role, string name)
        {
            if (!found.Contains(role))
                missing.Add(name);
        }
        Require(OutboxColumn.Id, names.Id);
        Require(OutboxColumn.AggregateType, names.AggregateType);
        Require(OutboxColumn.AggregateId, names.AggregateId);
        Require(OutboxColumn.EventType, names.EventType);
        Require(OutboxColumn.Payload, names.Payload);
        Require(OutboxColumn.CreatedAt, names.CreatedAt);
        if (names.Headers.Length > 0)
            Require(OutboxColumn.Headers, names.Headers);
        if (missing.Count > 0)
            throw new InvalidDataException(
                $"relation {relationName} has no column {string.Join(", ", missing)} any more (renamed or dropped)");
        return layout;
    }
}
