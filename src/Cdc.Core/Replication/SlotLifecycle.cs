using Cdc.Configuration;
using Cdc.Positions;
using Microsoft.Extensions.Logging;
using Npgsql;
using Npgsql.Replication;
using Npgsql.Replication.PgOutput;
using NpgsqlTypes;

namespace Cdc.Replication;

/// <summary>Which slot this is: the server (its system identifier), the database and the slot's name.</summary>
public sealed record SlotIdentity(string SystemId, string Database, string Slot)
{
    public SlotCheckpoint Checkpoint(ulong confirmedLsn, DateTime? commitTime, PendingTableRead? pending) =>
        new(SystemId, Database, Slot, confirmedLsn, commitTime, pending);
}

/// <summary>
/// Events a lost slot may not have relayed: committed after <see cref="From"/> (the last confirmed position, and its
/// commit time when known) and before <see cref="To"/> (the new slot's consistent point).
/// </summary>
public readonly record struct SlotGap(NpgsqlLogSequenceNumber From, DateTime? FromCommitTime, NpgsqlLogSequenceNumber To);

/// <summary>
/// Rows to relay from the table before streaming: the initial snapshot, or a lost slot's gap (<c>created_at</c> from
/// <see cref="From"/>). <see cref="SnapshotName"/> is the snapshot the slot's creation exported (rows committed before its
/// consistent point, exactly); null when an interrupted read is done again, at the current state of the table.
/// </summary>
public sealed record TableRead(string Kind, DateTime? From, string? SnapshotName)
{
    public PendingTableRead Pending => new(Kind, From);
}

/// <summary>
/// Finds the slot, or finds it lost, or creates it. What a missing slot means comes from the checkpoint: with one (of
/// this server, database and slot) the slot was lost — dropped, or a failover to a server without it — and
/// <c>Cdc:Postgres:LostSlotPolicy</c> decides; without one it is a first start. Intentions are written to the
/// checkpoint before they are carried out (a table read to do, before the slot that needs it is created), so a crash
/// at any point leaves either nothing done or something that is finished on the next start.
/// </summary>
static class SlotLifecycle
{
    public static async Task<PreparedSlot> EnsureAsync(NpgsqlConnection connection, LogicalReplicationConnection replication,
        PostgresOptions options, OutboxTable? table, SlotIdentity identity, ICheckpointStore store, ILogger logger, CancellationToken ct)
    {
        var checkpoints = await store.ReadAsync(identity.Database, identity.Slot, ct);
        var mine = checkpoints.LastOrDefault(c => c.SystemId == identity.SystemId);
        var other = checkpoints.LastOrDefault(c => c.SystemId != identity.SystemId);

        await using (var find = new NpgsqlCommand(
                         "SELECT plugin, database, wal_status, confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = $1", connection))
        {
            find.Parameters.AddWithValue(options.Slot);
            await using var reader = await find.ExecuteReaderAsync(ct);
            if (await reader.ReadAsync(ct))
            {
                var plugin = reader.IsDBNull(0) ? "(physical)" : reader.GetString(0);
                if (plugin != "pgoutput")
                    throw new CdcConfigurationException("Cdc:Postgres:Slot", $"slot {options.Slot} uses plugin {plugin}, not pgoutput");
                if (reader.GetString(1) != connection.Database)
                    throw new CdcConfigurationException("Cdc:Postgres:Slot",
                        $"slot {options.Slot} belongs to database {reader.GetString(1)}, not {connection.Database}");
                var confirmed = reader.IsDBNull(3) ? 0UL : (ulong)reader.GetFieldValue<NpgsqlLogSequenceNumber>(3);
                if (reader.IsDBNull(2) || reader.GetString(2) != "lost")
                {
                    // The slot is there. A table read it needed and did not finish is done again, at the table's current
                    // state (its exported snapshot is gone): rows it already relayed come twice, none is missed.
                    var again = mine?.Pending is { } pending ? new TableRead(pending.Kind, pending.From, SnapshotName: null) : null;
                    if (again is not null)
                        logger.LogWarning("The {Kind} of slot {Slot} was interrupted; relaying it again from the table's current rows" +
                                          " (rows it relayed before come again)", again.Kind, options.Slot);
                    return new PreparedSlot(confirmed, table, null, again, identity, mine);
                }
                await reader.CloseAsync();
                var lastConfirmed = mine is { ConfirmedLsn: > 0 } ? mine : identity.Checkpoint(confirmed, mine?.CommitTime, mine?.Pending);
                return await LostAsync(connection, replication, options, table, identity, store, lastConfirmed,
                    $"is invalidated (wal_status = 'lost'): it fell behind max_slot_wal_keep_size and the server removed WAL it still needed", logger, ct);
            }
        }

        if (mine is { ConfirmedLsn: > 0 })
            return await LostAsync(connection, replication, options, table, identity, store, mine,
                "does not exist any more (dropped, or this is a server that never had it, e.g. after a failover)", logger, ct);
        if (other is not null && mine is null)
        {
            // Not trusted blindly: a checkpoint of another server for this database and slot. A new cluster restored from
            // a dump, or a copy: what that server confirmed says nothing of this one, but events may be missing.
            logger.LogWarning("A checkpoint of slot {Slot} from another server exists ({Checkpoint}); this server ({SystemId}) has no such slot",
                options.Slot, other, identity.SystemId);
            return await LostAsync(connection, replication, options, table, identity, store, other,
                $"does not exist on this server (system identifier {identity.SystemId}), but a checkpoint written on server {other.SystemId} does: " +
                "this may be a restored copy or a new cluster, and events committed there after the checkpoint may never have been relayed", logger, ct);
        }

        // A first start (or one whose creation did not finish: a checkpoint with no confirmed position).
        var read = options.Snapshot == SnapshotMode.Initial && table is not null ? new TableRead(PendingTableRead.Snapshot, null, null) : null;
        var created = await CreateAsync(replication, options, identity, store, read, mine?.CommitTime, logger, ct);
        return new PreparedSlot(created.ConsistentPoint, table, null, read is null ? null : read with { SnapshotName = created.SnapshotName },
            identity, created.Checkpoint);
    }

    static async Task<PreparedSlot> LostAsync(NpgsqlConnection connection, LogicalReplicationConnection replication, PostgresOptions options,
        OutboxTable? table, SlotIdentity identity, ICheckpointStore store, SlotCheckpoint last, string what, ILogger logger, CancellationToken ct)
    {
        var since = last.CommitTime is { } t ? $" (its transaction committed at {t:O})" : "";
        if (options.LostSlotPolicy == LostSlotPolicy.Stop)
            throw new CdcStartupException(
                $"Slot {options.Slot} {what}. The last position the connector confirmed in it is {new NpgsqlLogSequenceNumber(last.ConfirmedLsn)}{since}; " +
                "events committed after that may not have been relayed. Set Cdc:Postgres:LostSlotPolicy=Backfill to create the slot again and " +
                "relay the gap's rows from the table, or Recreate to create it again and only log the gap (or re-create the slot yourself).");

        // A table read the lost slot had not finished is finished whatever the policy (Recreate accepts losing the gap,
        // not rows from before it): an interrupted snapshot is done again whole, which covers the gap too; an interrupted
        // backfill keeps its bound, as the gap it must cover is the first one.
        var read = table is null ? null
            : last.Pending is { } pending ? new TableRead(pending.Kind, pending.Kind == PendingTableRead.Snapshot ? null : pending.From, null)
            : options.LostSlotPolicy == LostSlotPolicy.Backfill ? new TableRead(PendingTableRead.Backfill, last.CommitTime - options.BackfillMargin, null)
            : null;
        await using (var drop = new NpgsqlCommand(
                         "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1", connection))
        {
            drop.Parameters.AddWithValue(options.Slot);
            await drop.ExecuteNonQueryAsync(ct);
        }
        var created = await CreateAsync(replication, options, identity, store, read, last.CommitTime, logger, ct, keep: last);
        var gap = new SlotGap(new NpgsqlLogSequenceNumber(last.ConfirmedLsn), last.CommitTime, new NpgsqlLogSequenceNumber(created.ConsistentPoint));
        logger.LogError(
            "Slot {Slot} {What}, and has been created again (Cdc:Postgres:LostSlotPolicy={Policy}). Events committed after {FromLsn}{Since} and " +
            "before {ToLsn} were not relayed from the slot{Backfill}",
            options.Slot, what, options.LostSlotPolicy, gap.From, since, gap.To,
            read is null ? ": re-publish them from the table if they are still there (Cdc:Postgres:SignalPrefix)"
            : read.Kind == PendingTableRead.Snapshot ? "; the unfinished initial snapshot is relayed again from the table, which covers them"
            : $"; they are relayed from the table (created_at from {read.From:O})");
        return new PreparedSlot(created.ConsistentPoint, table, gap, read is null ? null : read with { SnapshotName = created.SnapshotName },
            identity, created.Checkpoint);
    }

    sealed record Created(ulong ConsistentPoint, string? SnapshotName, SlotCheckpoint Checkpoint);

    /// <summary>
    /// Creates the slot (exporting a snapshot when rows are to be read from the table), after writing the intention to the
    /// checkpoint, and writes the checkpoint of the new slot.
    /// </summary>
    static async Task<Created> CreateAsync(LogicalReplicationConnection replication, PostgresOptions options, SlotIdentity identity,
        ICheckpointStore store, TableRead? read, DateTime? commitTime, ILogger logger, CancellationToken ct, SlotCheckpoint? keep = null)
    {
        if (read is not null)
            await store.WriteAsync(keep is null
                ? identity.Checkpoint(0, commitTime, read.Pending)
                : keep with { Pending = read.Pending, WrittenAt = DateTime.UtcNow }, ct);
        PgOutputReplicationSlot slot;
        try
        {
            slot = await replication.CreatePgOutputReplicationSlot(options.Slot,
                slotSnapshotInitMode: read is null ? LogicalSlotSnapshotInitMode.NoExport : LogicalSlotSnapshotInitMode.Export,
                cancellationToken: ct);
        }
        catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.DuplicateObject)
        {
            // Another replica created it at the same moment: it does the rest; this one stands by.
            throw new PostgresException($"replication slot \"{options.Slot}\" was just created by another reader", "ERROR", "ERROR",
                PostgresErrorCodes.ObjectInUse);
        }
        var point = (ulong)slot.ConsistentPoint;
        logger.LogInformation("Created replication slot {Slot} (pgoutput) at {Lsn}", slot.Name, slot.ConsistentPoint);
        var checkpoint = identity.Checkpoint(point, commitTime, read?.Pending);
        // So that a slot dropped before its first confirm is known to be lost, not taken for a first start.
        await store.WriteAsync(checkpoint, ct);
        return new Created(point, slot.SnapshotName, checkpoint);
    }
}
