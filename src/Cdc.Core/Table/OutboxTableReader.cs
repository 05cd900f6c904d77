using System.Runtime.CompilerServices;
using Cdc.Mapping;
using Cdc.Replication;
using Npgsql;
using NpgsqlTypes;

namespace Cdc.Table;

/// <summary>
/// One outbox row read from the table by a query. <see cref="Row"/> is decoded as the slot reader decodes an insert
/// (a value that cannot be decoded sets <see cref="OutboxRow.ReadError"/>, never throws). The rest says where the row
/// is and how it was written:
/// <list type="bullet">
/// <item><see cref="Xmin"/>: the id of the transaction that inserted it (a subtransaction's own id after a SAVEPOINT);</item>
/// <item><see cref="CommitTime"/>: when that transaction committed, known only with <c>track_commit_timestamp = on</c>;</item>
/// <item><see cref="TableOid"/> and <see cref="Ctid"/>: the row's physical address (its partition and tuple), stable while
/// the reading transaction holds a lock on it;</item>
/// <item><see cref="SortCreatedAt"/> and <see cref="SortId"/>: the (<c>created_at</c>, <c>id</c>) order key as the server's
/// text, which casts back exactly even when the decoded values are unreadable (see <see cref="OutboxTableReader.After"/>).</item>
/// </list>
/// </summary>
sealed record TableRow(OutboxRow Row, uint Xmin, DateTime? CommitTime, uint TableOid, NpgsqlTid Ctid, string SortCreatedAt, string SortId)
{
    /// <summary>The commit time to report: the transaction's when the server tracks it, else the row's <c>created_at</c>.</summary>
    public DateTime CommitTimeOrCreatedAt => CommitTime ?? Row.CreatedAt ?? default;
}

/// <summary>
/// Reads outbox rows from the table by SQL the caller writes, into the <see cref="OutboxRow"/> shape the mapper takes.
/// Each configured column is selected through its type's binary send function (<c>uuid_send(id)</c>,
/// <c>jsonb_send(payload)</c>, …), which gives the same bytes pgoutput's binary mode sends, and decoded by
/// <see cref="OutboxRowReader.Decode"/>: rows read from the table and from the slot become the same events.
/// <code>
/// var reader = await OutboxTableReader.CreateAsync(connection, table, columns, ct);
/// var sql = $"SELECT {reader.Columns} FROM {reader.From} WHERE {reader.After(1)} ORDER BY {reader.OrderBy} LIMIT 1000";
/// await foreach (var row in reader.ReadAsync(command, ct)) ...
/// </code>
/// One reader per table and connection settings; it holds no connection and is safe to share.
/// </summary>
sealed class OutboxTableReader
{
    // The select list starts with these, then the configured columns in OutboxRelationLayout's order.
    const int XminOrdinal = 0, CommitTimeOrdinal = 1, TableOidOrdinal = 2, CtidOrdinal = 3, SortCreatedAtOrdinal = 4, SortIdOrdinal = 5, FirstColumn = 6;

    readonly OutboxRelationLayout _layout;
    readonly string _idType;
    readonly string _createdAt;
    readonly string _id;

    OutboxTableReader(OutboxTable table, OutboxRelationLayout layout, string columns, string idType, string createdAt, string id)
    {
        Table = table;
        _layout = layout;
        Columns = columns;
        _idType = idType;
        _createdAt = createdAt;
        _id = id;
    }

    public OutboxTable Table { get; }

    /// <summary>The table as it goes after FROM (quoted; a partitioned table's rows come from its partitions).</summary>
    public string From => Table.Name.Quoted;

    /// <summary>The select list every query of this reader must use, as is: <c>SELECT {Columns} FROM …</c>.</summary>
    public string Columns { get; }

    /// <summary>
    /// The order rows are relayed in, for ORDER BY: <c>created_at, id</c>, qualified by the table, since a bare name in
    /// ORDER BY means a select-list column of that name first (here the text forms, which sort otherwise, and no index).
    /// </summary>
    public string OrderBy => $"{From}.{_createdAt}, {From}.{_id}";

    /// <summary>
    /// A condition for keyset pages: rows after a given row in <see cref="OrderBy"/> order, with that row's
    /// <see cref="AfterParameters"/> as parameters <c>$n</c> and <c>$n+1</c>.
    /// </summary>
    public string After(int firstParameter) =>
        $"({From}.{_createdAt}, {From}.{_id}) > (${firstParameter}::timestamptz, ${firstParameter + 1}::{_idType})";

    /// <summary>The parameters of <see cref="After"/> for the rows after <paramref name="row"/>.</summary>
    public static NpgsqlParameter[] AfterParameters(TableRow row) =>
    [
        new() { Value = row.SortCreatedAt, NpgsqlDbType = NpgsqlDbType.Text },
        new() { Value = row.SortId, NpgsqlDbType = NpgsqlDbType.Text },
    ];

    /// <summary>
    /// Builds the reader from the catalog: the table's configured columns, their types and send functions. Expects the
    /// columns checked already (<see cref="OutboxSlot"/>'s start checks); throws <see cref="InvalidDataException"/> when
    /// one is missing.
    /// </summary>
    public static async Task<OutboxTableReader> CreateAsync(NpgsqlConnection connection, OutboxTable table, OutboxColumns names,
        CancellationToken ct, IReadOnlyList<Placement>? placements = null)
    {
        var columns = new Dictionary<string, (uint Type, string Send, string TypeName)>(StringComparer.Ordinal);
        await using (var command = new NpgsqlCommand(
                         """
                         SELECT a.attname, a.atttypid, t.typsend::regproc::text, format_type(a.atttypid, a.atttypmod)
                         FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
                         WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
                         """, connection))
        {
            command.Parameters.AddWithValue(NpgsqlDbType.Oid, table.Oid);
            await using var reader = await command.ExecuteReaderAsync(ct);
            while (await reader.ReadAsync(ct))
                columns[reader.GetString(0)] = (reader.GetFieldValue<uint>(1), reader.GetString(2), reader.GetString(3));
        }

        // The configured columns in the contract's order (a headers column is optional), then the placed ones.
        var wanted = names.Named().Select(n => n.Value).Where(n => n.Length > 0)
            .Concat((placements ?? []).Select(p => p.Column)).Distinct(StringComparer.Ordinal).ToList();
        var missing = wanted.Where(n => !columns.ContainsKey(n)).ToList();
        if (missing.Count > 0)
            throw new InvalidDataException($"table {table.Name} has no column {string.Join(", ", missing)}");
        var layout = OutboxRelationLayout.For([.. wanted.Select(n => (n, columns[n].Type))], names, table.Name.ToString(), placements);

        var trackCommitTime = await ScalarAsync(connection, "SHOW track_commit_timestamp", ct) is "on";
        var createdAt = SqlIdentifier.Quote(names.CreatedAt);
        var id = SqlIdentifier.Quote(names.Id);
        // Send functions come from the catalog as regproc text, quoted and qualified by the server where needed.
        var select = string.Join(", ", [
            "xmin",
            trackCommitTime ? "pg_xact_commit_timestamp(xmin)" : "NULL::timestamptz",
            "tableoid",
            "ctid",
            $"{createdAt}::text AS sort_created_at",
            $"{id}::text AS sort_id",
            .. wanted.Select(n => $"{columns[n].Send}({SqlIdentifier.Quote(n)})"),
        ]);
        return new OutboxTableReader(table, layout, select, columns[names.Id].TypeName, createdAt, id);
    }

    /// <summary>
    /// Rows with <c>created_at</c> in [<paramref name="from"/>, <paramref name="to"/>) (either bound may be open), in
    /// <see cref="OrderBy"/> order: the snapshot, the backfill of a gap, a re-publish by range.
    /// </summary>
    public IAsyncEnumerable<TableRow> ReadRangeAsync(NpgsqlConnection connection, DateTime? from, DateTime? to, CancellationToken ct)
    {
        var command = new NpgsqlCommand { Connection = connection };
        var where = new List<string>();
        if (from is { } f)
        {
            where.Add($"{From}.{_createdAt} >= ${command.Parameters.Count + 1}");
            command.Parameters.AddWithValue(NpgsqlDbType.TimestampTz, DateTime.SpecifyKind(f, DateTimeKind.Utc));
        }
        if (to is { } t)
        {
            where.Add($"{From}.{_createdAt} < ${command.Parameters.Count + 1}");
            command.Parameters.AddWithValue(NpgsqlDbType.TimestampTz, DateTime.SpecifyKind(t, DateTimeKind.Utc));
        }
        command.CommandText = $"SELECT {Columns} FROM {From}" + (where.Count > 0 ? " WHERE " + string.Join(" AND ", where) : "") +
                              $" ORDER BY {OrderBy}";
        return ReadOwnedAsync(command, ct);
    }

    /// <summary>The rows with these ids (compared as text, so uuid and text ids both work), in <see cref="OrderBy"/> order.</summary>
    public IAsyncEnumerable<TableRow> ReadIdsAsync(NpgsqlConnection connection, IReadOnlyList<string> ids, CancellationToken ct)
    {
        var command = new NpgsqlCommand($"SELECT {Columns} FROM {From} WHERE {From}.{_id}::text = ANY($1) ORDER BY {OrderBy}", connection);
        command.Parameters.AddWithValue(ids.ToArray());
        return ReadOwnedAsync(command, ct);
    }

    async IAsyncEnumerable<TableRow> ReadOwnedAsync(NpgsqlCommand command, [EnumeratorCancellation] CancellationToken ct)
    {
        await using var _ = command;
        await foreach (var row in ReadAsync(command, ct))
            yield return row;
    }

    /// <summary>
    /// Runs <paramref name="command"/> (a query selecting <see cref="Columns"/>) and yields its rows as they arrive. A
    /// value that cannot be decoded never throws: the row carries a <see cref="OutboxRow.ReadError"/> (and is
    /// dead-lettered by the mapper).
    /// </summary>
    public async IAsyncEnumerable<TableRow> ReadAsync(NpgsqlCommand command, [EnumeratorCancellation] CancellationToken ct)
    {
        await using var reader = await command.ExecuteReaderAsync(ct);
        while (await reader.ReadAsync(ct))
            yield return Read(reader);
    }

    TableRow Read(NpgsqlDataReader reader)
    {
        var row = OutboxRowReader.NewRow(_layout);
        for (var i = 0; i < _layout.Columns.Length; i++)
        {
            var ordinal = FirstColumn + i;
            OutboxRowReader.Decode(row, i, reader.IsDBNull(ordinal) ? null : reader.GetFieldValue<byte[]>(ordinal), _layout);
        }
        return new TableRow(
            row,
            reader.GetFieldValue<uint>(XminOrdinal),
            reader.IsDBNull(CommitTimeOrdinal) ? null : reader.GetFieldValue<DateTime>(CommitTimeOrdinal),
            reader.GetFieldValue<uint>(TableOidOrdinal),
            reader.GetFieldValue<NpgsqlTid>(CtidOrdinal),
            reader.GetString(SortCreatedAtOrdinal),
            reader.GetString(SortIdOrdinal));
    }

    static async Task<object?> ScalarAsync(NpgsqlConnection connection, string sql, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        return await command.ExecuteScalarAsync(ct);
    }
}
