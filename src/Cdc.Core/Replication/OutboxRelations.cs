using Cdc.Configuration;
using Microsoft.Extensions.Logging;
using Cdc.Replication.PgOutput;

namespace Cdc.Replication;

/// <summary>
/// Tells which relations of the stream are the outbox table. A relation is recognised by its id (the table's OID), not
/// by its name: a renamed table is still the outbox (the publication follows the OID too), and a partitioned table's
/// changes arrive under the root's id (the publication has <c>publish_via_partition_root</c>, checked at start). A
/// relation of another id that bears the outbox's configured name is a new table in its place (rotated, or dropped and
/// created again): its rows are not the stream's outbox, and skipping them would lose them, so the stream stops there,
/// before any of them is confirmed past.
/// </summary>
sealed class OutboxRelations(OutboxTable table, OutboxColumns names, ILogger logger, IReadOnlyList<Mapping.Placement>? placements = null)
{
    readonly Dictionary<uint, OutboxRelationLayout?> _layouts = [];
    string? _lastName;

    /// <summary>
    /// The layout for a Relation message: the outbox's, or null for another table of the publication. Throws when the
    /// outbox lost a configured column, or when another table has taken the outbox's name.
    /// </summary>
    public OutboxRelationLayout? OnRelation(RelationMessage relation)
    {
        var id = relation.RelationId;
        if (id != table.Oid)
        {
            if (relation.Namespace == table.Name.Schema && relation.RelationName == table.Name.Name)
                throw new CdcStartupException(
                    $"Rows of a table named {table.Name} (relation {id}) are in the stream, but it is not the outbox table the stream " +
                    $"started with (relation {table.Oid}): the outbox was rotated, or dropped and created again. Stopping without " +
                    "confirming past them; start the worker again to relay the new table from its first row (add it to the " +
                    "publication if it is not in it).");
            _layouts[id] = null;
            return null;
        }
        NoticeName(relation);
        var layout = OutboxRelationLayout.For(relation, names, placements);
        _layouts[id] = layout;
        return layout;
    }

    /// <summary>The layout of a relation announced earlier on this stream, or null when it is not the outbox.</summary>
    public OutboxRelationLayout? this[uint relationId] => _layouts.GetValueOrDefault(relationId);

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
