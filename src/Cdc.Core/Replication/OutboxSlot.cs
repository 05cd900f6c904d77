using Cdc.Configuration;
using Cdc.Positions;
using Microsoft.Extensions.Logging;
using Npgsql;
using Npgsql.Replication;
using Npgsql.Replication.PgOutput;
using NpgsqlTypes;

namespace Cdc.Replication;

/// <summary>
/// What streaming starts from: the slot's confirmed position (the confirmer never goes below it), the outbox table's
/// relation (null in table-less mode), what must be read from the table before streaming, and the slot's identity
/// and last checkpoint.
/// </summary>
public sealed record PreparedSlot(ulong ConfirmedLsn, OutboxTable? Table, SlotGap? Gap, TableRead? TableRead, SlotIdentity Identity,
    SlotCheckpoint? Checkpoint);

/// <summary>The outbox table as the server knows it: its relation id and, when partitioned, so marked.</summary>
public sealed record OutboxTable(TableName Name, uint Oid, bool Partitioned);

/// <summary>A problem on the database side that no retry fixes (wal_level, missing table, privileges).</summary>
public sealed class CdcStartupException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// Prepares the server side before streaming: checks <c>wal_level</c>, the role and the outbox table's columns, and
/// creates the publication and the slot when they are missing.
/// </summary>
public static class OutboxSlot
{
    static readonly HashSet<string> TextTypes = ["text", "character varying", "character", "name"];

    /// <summary>
    /// Checks the server (wal_level, the role, the outbox table's columns) and creates the publication when it is missing.
    /// Runs before any replication connection is opened, so a role without REPLICATION hears what to change.
    /// </summary>
    public static async Task<OutboxTable?> CheckServerAsync(PostgresOptions options, ILogger logger, CancellationToken ct,
        IReadOnlyList<Mapping.Placement>? placements = null)
    {
        var table = options.OutboxTable;
        await using var connection = new NpgsqlConnection(options.ConnectionString);
        await connection.OpenAsync(ct);

        var walLevel = (string?)await Scalar(connection, "SHOW wal_level", ct);
        if (walLevel != "logical")
            throw new CdcStartupException(
                $"The server's wal_level is '{walLevel}'; logical replication needs wal_level = logical " +
                "(ALTER SYSTEM SET wal_level = logical, then restart PostgreSQL).");

        var canReplicate = (bool?)await Scalar(connection,
            "SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user", ct);
        if (canReplicate != true)
            throw new CdcStartupException(
                "The role in Cdc:Postgres:ConnectionString lacks the REPLICATION attribute (ALTER ROLE <role> REPLICATION).");

        var outbox = table is { } name ? await FindTableAsync(connection, name, ct) : null;
        if (outbox is not null)
            await CheckColumnsAsync(connection, outbox, options.Columns, placements ?? [], ct);
        await EnsurePublicationAsync(connection, options.Publication, outbox, logger, ct);
        return outbox;
    }

    /// <summary>
    /// Finds the slot, or finds it lost, or creates it (on <paramref name="replication"/>, which then holds the snapshot
    /// its creation exported until it starts streaming).
    /// </summary>
    public static async Task<PreparedSlot> EnsureSlotAsync(PostgresOptions options, OutboxTable? outbox, LogicalReplicationConnection replication,
        SlotIdentity identity, ICheckpointStore checkpoints, ILogger logger, CancellationToken ct)
    {
        await using var connection = new NpgsqlConnection(options.ConnectionString);
        await connection.OpenAsync(ct);
        return await SlotLifecycle.EnsureAsync(connection, replication, options, outbox, identity, checkpoints, logger, ct);
    }

    internal static async Task<OutboxTable> FindTableAsync(NpgsqlConnection connection, TableName table, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand("SELECT c.oid, c.relkind FROM pg_class c WHERE c.oid = to_regclass($1)", connection);
        command.Parameters.AddWithValue(table.Quoted);
        await using var reader = await command.ExecuteReaderAsync(ct);
        if (!await reader.ReadAsync(ct))
            throw new CdcConfigurationException("Cdc:Postgres:Table", $"table {table} does not exist (or the role cannot see it)");
        var kind = reader.GetChar(1);
        if (kind is not ('r' or 'p'))
            throw new CdcConfigurationException("Cdc:Postgres:Table", $"{table} is not a table (relkind '{kind}')");
        return new OutboxTable(table, reader.GetFieldValue<uint>(0), Partitioned: kind == 'p');
    }


    internal static async Task CheckColumnsAsync(
        NpgsqlConnection connection, OutboxTable outbox, OutboxColumns names, IReadOnlyList<Mapping.Placement> placements, CancellationToken ct)
    {
        var table = outbox.Name;
        await using var command = new NpgsqlCommand(
            """
            SELECT a.attname, format_type(a.atttypid, NULL)
            FROM pg_attribute a
            WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
            """, connection);
        command.Parameters.AddWithValue(NpgsqlTypes.NpgsqlDbType.Oid, outbox.Oid);
        var columns = new Dictionary<string, string>(StringComparer.Ordinal);
        await using (var reader = await command.ExecuteReaderAsync(ct))
            while (await reader.ReadAsync(ct))
                columns[reader.GetString(0)] = reader.GetString(1);

        if (columns.Count == 0)
            throw new CdcConfigurationException("Cdc:Postgres:Table", $"table {table} does not exist (or the role cannot see it)");

        Expect("Id", names.Id, ["uuid", .. TextTypes]);
        Expect("AggregateType", names.AggregateType, TextTypes);
        Expect("AggregateId", names.AggregateId, TextTypes);
        Expect("EventType", names.EventType, TextTypes);
        Expect("Payload", names.Payload, ["jsonb", "json", "bytea"]);
        if (names.Headers.Length > 0) // empty: the table has no headers column
            Expect("Headers", names.Headers, ["jsonb", "json"]);
        PlacedColumns.Check(table, columns, placements);
        if (columns.GetValueOrDefault(names.CreatedAt) == "timestamp without time zone")
            throw new CdcConfigurationException("Cdc:Postgres:Columns:CreatedAt",
                $"column {table}.{names.CreatedAt} is timestamp without time zone; it must be timestamptz, since a time without " +
                $"a zone cannot be placed on the events' timeline (ALTER TABLE {table.Quoted} ALTER COLUMN \"{names.CreatedAt}\" " +
                "TYPE timestamptz USING ... AT TIME ZONE '<the zone it was written in>')");
        Expect("CreatedAt", names.CreatedAt, ["timestamp with time zone"]);

        void Expect(string option, string column, IReadOnlyCollection<string> types)
        {
            var key = $"Cdc:Postgres:Columns:{option}";
            if (!columns.TryGetValue(column, out var type))
                throw new CdcConfigurationException(key, $"table {table} has no column '{column}'");
            if (!types.Contains(type))
                throw new CdcConfigurationException(key, $"column {table}.{column} is {type}; expected {string.Join(" or ", types)}");
        }
    }

    static async Task EnsurePublicationAsync(
        NpgsqlConnection connection, string publication, OutboxTable? outbox, ILogger logger, CancellationToken ct)
    {
        // Whether the publication publishes inserts, and of the outbox: whether the table itself is in it (directly,
        // FOR ALL TABLES or FOR TABLES IN SCHEMA: new partitions are then covered too), and how many of its current
        // leaf partitions are not. pg_publication_tables lists leaves when publish_via_partition_root is off.
        await using var find = new NpgsqlCommand(
            """
            SELECT p.pubinsert, p.pubviaroot,
                   p.puballtables
                   OR EXISTS (SELECT 1 FROM pg_publication_rel r WHERE r.prpubid = p.oid AND r.prrelid = $2)
                   OR EXISTS (SELECT 1 FROM pg_publication_namespace n JOIN pg_class c ON c.relnamespace = n.pnnspid
                              WHERE n.pnpubid = p.oid AND c.oid = $2),
                   (SELECT count(*) FROM pg_partition_tree($2) t
                    WHERE t.isleaf AND t.relid <> $2::regclass
                      AND NOT EXISTS (SELECT 1 FROM pg_publication_tables pt
                                      WHERE pt.pubname = p.pubname
                                        AND format('%I.%I', pt.schemaname, pt.tablename)::regclass = t.relid))
            FROM pg_publication p WHERE p.pubname = $1
            """, connection);
        find.Parameters.AddWithValue(publication);
        find.Parameters.AddWithValue(NpgsqlTypes.NpgsqlDbType.Oid, outbox?.Oid ?? 0u);
        await using (var reader = await find.ExecuteReaderAsync(ct))
        {
            if (await reader.ReadAsync(ct))
            {
                if (!reader.GetBoolean(0))
                    throw new CdcConfigurationException("Cdc:Postgres:Publication", $"publication {publication} does not publish inserts");
                if (outbox is null)
                    return;
                var includesTable = reader.GetBoolean(2);
                var uncoveredPartitions = reader.IsDBNull(3) ? 0 : reader.GetInt64(3);
                if (!includesTable && !outbox.Partitioned)
                    throw new CdcConfigurationException("Cdc:Postgres:Publication",
                        $"publication {publication} exists but does not include table {outbox.Name}");
                if (!includesTable)
                    // Listing partitions rather than the table hides the rows of every partition it misses, and of
                    // every partition attached later.
                    throw new CdcConfigurationException("Cdc:Postgres:Publication",
                        $"publication {publication} does not include the partitioned table {outbox.Name} itself" +
                        (uncoveredPartitions > 0 ? $" and misses {uncoveredPartitions} of its partitions" : "") +
                        $", so rows of partitions it does not list would never be relayed; run: ALTER PUBLICATION \"{publication}\" " +
                        $"ADD TABLE {outbox.Name.Quoted}; ALTER PUBLICATION \"{publication}\" SET (publish_via_partition_root = true)");
                if (outbox.Partitioned && !reader.GetBoolean(1))
                    // Without it, rows arrive under each partition's own relation, and a partition detached before its rows
                    // were read could no longer be told from another table: they would be skipped.
                    throw new CdcConfigurationException("Cdc:Postgres:Publication",
                        $"publication {publication} publishes the partitions of {outbox.Name} under their own names " +
                        $"(publish_via_partition_root = false), which can hide the rows of a partition detached before they were read; run: " +
                        $"ALTER PUBLICATION \"{publication}\" SET (publish_via_partition_root = true)");
                return;
            }
        }

        try
        {
            // Table-less mode still needs a publication to stream from; an empty one publishes only messages. A
            // partitioned table's changes are published as the root's, so partitions attached later change nothing.
            var forTable = outbox is null ? "" : $"FOR TABLE {outbox.Name.Quoted} ";
            await using var create = new NpgsqlCommand(
                $"CREATE PUBLICATION \"{publication}\" {forTable}WITH (publish = 'insert', publish_via_partition_root = true)", connection);
            await create.ExecuteNonQueryAsync(ct);
            logger.LogInformation("Created publication {Publication} for {Table} (inserts only)", publication,
                outbox?.Name.ToString() ?? "no table (messages only)");
        }
        catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.DuplicateObject)
        {
            // Another replica created it at the same moment.
        }
        catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.InsufficientPrivilege)
        {
            throw new CdcConfigurationException("Cdc:Postgres:Publication",
                $"publication {publication} does not exist and this role may not create it ({e.MessageText}); have the table's " +
                $"owner run: CREATE PUBLICATION \"{publication}\" FOR TABLE {outbox?.Name.Quoted} WITH (publish = 'insert', publish_via_partition_root = true)", e);
        }
    }

    static async Task<object?> Scalar(NpgsqlConnection connection, string sql, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        return await command.ExecuteScalarAsync(ct);
    }
}
