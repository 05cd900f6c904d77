using Cdc.Configuration;
using Microsoft.Extensions.Logging;
using Npgsql;
using Npgsql.Replication.PgOutput.Messages;

namespace Cdc.Replication;

/// <summary>
/// Tells which relations of the stream are the outbox table. A relation is recognised by its id (the table's OID), not
/// by its name: a renamed table is still the outbox (the publication follows the OID too), and a partitioned table's
/// changes may arrive under the root's id (<c>publish_via_partition_root</c>) or under each partition's own.
/// </summary>
sealed class OutboxRelations(OutboxTable table, OutboxColumns names, string connectionString, ILogger logger,
    IReadOnlyList<Mapping.Placement>? placements = null)
{
    readonly Dictionary<uint, OutboxRelationLayout?> _layouts = [];
    readonly HashSet<uint> _notOutbox = [];
    string? _lastName;

    /// <summary>
    /// The layout for a Relation message: the outbox's (or one of its partitions'), or null for another table of the
    /// publication. Throws when the outbox lost a configured column.
    /// </summary>
    public async ValueTask<OutboxRelationLayout?> OnRelationAsync(RelationMessage relation, CancellationToken ct)
    {
        var id = relation.RelationId;
        if (id != table.Oid && !await IsPartitionAsync(id, ct))
        {
            _layouts[id] = null;
            return null;
        }
        if (id == table.Oid)
            NoticeName(relation);
        var layout = OutboxRelationLayout.For(relation, names, placements);
        _layouts[id] = layout;
        return layout;
    }

    /// <summary>The layout of a relation announced earlier on this stream, or null when it is not the outbox.</summary>
    public OutboxRelationLayout? this[uint relationId] => _layouts.GetValueOrDefault(relationId);

    async ValueTask<bool> IsPartitionAsync(uint relationId, CancellationToken ct)
    {
        if (!table.Partitioned || _notOutbox.Contains(relationId))
            return false;
        // Asked once per relation and stream: partitions attached while streaming are found when they first appear.
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync(ct);
        await using var command = new NpgsqlCommand(
            "SELECT EXISTS (SELECT 1 FROM pg_partition_ancestors($1::regclass) a WHERE a.relid = $2::regclass)", connection);
        command.Parameters.AddWithValue(NpgsqlTypes.NpgsqlDbType.Oid, relationId);
        command.Parameters.AddWithValue(NpgsqlTypes.NpgsqlDbType.Oid, table.Oid);
        var isPartition = await command.ExecuteScalarAsync(ct) is true;
        if (!isPartition)
            _notOutbox.Add(relationId);
        return isPartition;
    }

    void NoticeName(RelationMessage relation)
    {
        var name = $"{relation.Namespace}.{relation.RelationName}";
        if (name == _lastName)
            return;
        var configured = table.Name.ToString();
        if (name != configured && _lastName != name)
            logger.LogWarning(
                "The outbox table {Table} (relation {Oid}) is named {Name} in the stream: it was renamed. Its rows are still " +
                "relayed, since the publication follows the table; set Cdc:Postgres:Table to its new name before the next start",
                configured, relation.RelationId, name);
        _lastName = name;
    }
}
