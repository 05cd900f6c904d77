using Cdc.Configuration;
using Cdc.Mapping;
using Cdc.Replication.PgOutput;

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
    public const uint TextOid = 25, VarcharOid = 1043, BpcharOid = 1042, NameOid = 19;
    static readonly HashSet<uint> TextTypes = [TextOid, VarcharOid, BpcharOid, NameOid];

    OutboxRelationLayout(OutboxColumn[] columns)
    {
        Columns = columns;
        PlacedAt = new int[]?[columns.Length];
        TypeIds = new uint[columns.Length];
        ColumnNames = new string[columns.Length];
    }

    public OutboxColumn[] Columns { get; }
    /// <summary>Per column: the placements (indexes into <see cref="OutboxRow.Placed"/>) its value goes to, or null.</summary>
    public int[]?[] PlacedAt { get; }
    public uint[] TypeIds { get; }
    public string[] ColumnNames { get; }
    /// <summary>How many columns are placed (<c>Cdc:Kafka:AdditionalPlacement</c>).</summary>
    public int PlacementCount { get; private set; }
    public bool IdIsUuid { get; private set; }
    public PayloadKind PayloadKind { get; private set; }
    /// <summary>jsonb's binary form starts with a version byte before the JSON text.</summary>
    public bool PayloadIsJsonb { get; private set; }
    public bool HeadersIsJsonb { get; private set; }
    /// <summary>The aggregate types and event types read last: the same few repeat row after row.</summary>
    public RepeatedText AggregateTypes { get; } = new();
    public RepeatedText EventTypes { get; } = new();

    public static OutboxRelationLayout For(RelationMessage relation, OutboxColumns names, IReadOnlyList<Placement>? placements = null) =>
        For([.. relation.Columns.Select(c => (c.Name, c.TypeId))], names, $"{relation.Namespace}.{relation.RelationName}", placements);

    /// <summary>
    /// The layout of columns given by name and type OID, in order (a Relation message's, or a query's). Throws when a
    /// configured column is missing or of a type the connector does not read as the start-up check would refuse it: the
    /// table changed under the stream, and rows read with a wrong layout would be lost or mislabelled. That stops the
    /// worker (a restart would only meet the same change again) without confirming past the change.
    /// </summary>
    public static OutboxRelationLayout For(IReadOnlyList<(string Name, uint TypeOid)> relationColumns, OutboxColumns names, string relation,
        IReadOnlyList<Placement>? placements = null)
    {
        var columns = new OutboxColumn[relationColumns.Count];
        var layout = new OutboxRelationLayout(columns);
        var found = new HashSet<OutboxColumn>();
        var wrongType = new List<string>();
        for (var i = 0; i < columns.Length; i++)
        {
            var (name, typeOid) = relationColumns[i];
            var role = name == names.Id ? OutboxColumn.Id
                : name == names.AggregateType ? OutboxColumn.AggregateType
                : name == names.AggregateId ? OutboxColumn.AggregateId
                : name == names.EventType ? OutboxColumn.EventType
                : name == names.Payload ? OutboxColumn.Payload
                : names.Headers.Length > 0 && name == names.Headers ? OutboxColumn.Headers
                : name == names.CreatedAt ? OutboxColumn.CreatedAt
                : OutboxColumn.Other;
            columns[i] = role;
            layout.TypeIds[i] = typeOid;
            layout.ColumnNames[i] = name;
            found.Add(role);
            var typeOk = role switch
            {
                OutboxColumn.Id => typeOid == UuidOid || TextTypes.Contains(typeOid),
                OutboxColumn.AggregateType or OutboxColumn.AggregateId or OutboxColumn.EventType => TextTypes.Contains(typeOid),
                OutboxColumn.Payload => typeOid is JsonbOid or JsonOid or ByteaOid,
                OutboxColumn.Headers => typeOid is JsonbOid or JsonOid,
                OutboxColumn.CreatedAt => typeOid == TimestampTzOid,
                _ => true,
            };
            if (!typeOk)
                wrongType.Add($"{name} (type oid {typeOid})");
            switch (role)
            {
                case OutboxColumn.Id:
                    layout.IdIsUuid = typeOid == UuidOid;
                    break;
                case OutboxColumn.Payload:
                    layout.PayloadKind = typeOid == ByteaOid ? PayloadKind.Bytes : PayloadKind.Json;
                    layout.PayloadIsJsonb = typeOid == JsonbOid;
                    break;
                case OutboxColumn.Headers:
                    layout.HeadersIsJsonb = typeOid == JsonbOid;
                    break;
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
        for (var p = 0; p < (placements?.Count ?? 0); p++)
        {
            var placement = placements![p];
            var at = Array.IndexOf(layout.ColumnNames, placement.Column);
            if (at < 0)
            {
                missing.Add(placement.Column);
                continue;
            }
            var type = layout.TypeIds[at];
            if (!PlacedColumns.Decodes(type) || (placement.Target == PlacementTarget.Partition && !PlacedColumns.IsInteger(type)))
                wrongType.Add($"{placement.Column} (placed; type oid {type})");
            layout.PlacedAt[at] = [.. layout.PlacedAt[at] ?? [], p];
        }
        layout.PlacementCount = placements?.Count ?? 0;
        if (missing.Count > 0 || wrongType.Count > 0)
            throw new CdcStartupException(
                $"The outbox table {relation} changed under the stream: " +
                (missing.Count > 0 ? $"it has no column {string.Join(", ", missing)} any more (renamed, dropped, or left out of the publication's column list)" : "") +
                (missing.Count > 0 && wrongType.Count > 0 ? "; " : "") +
                (wrongType.Count > 0 ? $"column {string.Join(", ", wrongType)} is of a type the connector does not read there" : "") +
                ". Stopping without confirming past it: restore the column (or set Cdc:Postgres:Columns:* to match) and start again.");
        return layout;
    }
}

/// <summary>
/// The text of a column whose values repeat (aggregate and event types): the string read last is given again for the
/// same bytes instead of a new one per row. Safe to share between readers: a race only costs a new string.
/// </summary>
sealed class RepeatedText
{
    sealed record Entry(byte[] Bytes, string Text);

    Entry? _last;

    public string Text(ReadOnlySpan<byte> raw)
    {
        if (_last is { } last && raw.SequenceEqual(last.Bytes))
            return last.Text;
        var text = OutboxRowReader.Text(raw); // throws on bytes that are not UTF-8, before anything is kept
        if (raw.Length <= 256)
            _last = new Entry(raw.ToArray(), text);
        return text;
    }
}
