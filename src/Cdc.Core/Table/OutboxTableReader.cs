using System.Runtime.CompilerServices;
using Cdc.Mapping;
using Cdc.Replication;
using Npgsql;
using NpgsqlTypes;

namespace Cdc.Table;

/// <summary>
/// Reads outbox rows from the table (snapshot, backfill, re-publishing) into the same <see cref="OutboxRow"/> as rows read
/// from the slot, decoded the same way: each configured column is selected through its type's send function, i.e. as
/// the very bytes pgoutput's binary mode sends, and decoded by <see cref="OutboxRowReader.Decode"/> (which never throws:
/// a value that cannot become an event makes the row a dead letter). Rows come ordered by (<c>created_at</c>, id).
/// </summary>
public sealed class OutboxTableReader
{
    readonly OutboxTable _table;
    readonly OutboxRelationLayout _layout;
    readonly string _selectList;
    readonly string _createdAt;
    readonly string _id;

    OutboxTableReader(OutboxTable table, OutboxRelationLayout layout, string selectList, string createdAt, string id)
    {
        _table = table;
        _layout = layout;
        _selectList = selectList;
        _createdAt = createdAt;
        _id = id;
    }

    /// <summary>Looks up the configured columns' types and send functions.</summary>
    public static async Task<OutboxTableReader> CreateAsync(NpgsqlConnection connection, OutboxTable table, OutboxColumns names,
        IReadOnlyList<Placement> placements, CancellationToken ct)
    {
        await using var command = new NpgsqlCommand(
            """
            SELECT a.attname, a.atttypid, quote_ident(n.nspname) || '.' || quote_ident(p.proname)
            FROM pg_attribute a
            JOIN pg_type t ON t.oid = a.atttypid
            JOIN pg_proc p ON p.oid = t.typsend
            JOIN pg_namespace n ON n.oid = p.pronamespace
            WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
            ORDER BY a.attnum
            """, connection);
        command.Parameters.AddWithValue(NpgsqlDbType.Oid, table.Oid);
        var wanted = names.Named().Select(n => n.Value).Where(c => c.Length > 0).Concat(placements.Select(p => p.Column))
            .ToHashSet(StringComparer.Ordinal);
        var columns = new List<(string Name, uint TypeOid)>();
        var select = new List<string>();
        await using (var reader = await command.ExecuteReaderAsync(ct))
        {
            while (await reader.ReadAsync(ct))
            {
                var name = reader.GetString(0);
                if (!wanted.Contains(name))
                    continue;
                columns.Add((name, reader.GetFieldValue<uint>(1)));
                select.Add($"{reader.GetString(2)}({SqlIdentifier.Quote(name)})");
            }
        }
        var layout = OutboxRelationLayout.For(columns, names, table.Name.ToString(), placements);
        return new OutboxTableReader(table, layout, string.Join(", ", select), SqlIdentifier.Quote(names.CreatedAt), SqlIdentifier.Quote(names.Id));
    }

    /// <summary>Rows with <c>created_at</c> in [<paramref name="from"/>, <paramref name="to"/>) (either bound may be open).</summary>
    public IAsyncEnumerable<OutboxRow> ReadRangeAsync(NpgsqlConnection connection, DateTime? from, DateTime? to, CancellationToken ct)
    {
        var command = new NpgsqlCommand { Connection = connection };
        var where = new List<string>();
        if (from is { } f)
        {
            where.Add($"{_createdAt} >= ${command.Parameters.Count + 1}");
            command.Parameters.AddWithValue(NpgsqlDbType.TimestampTz, DateTime.SpecifyKind(f, DateTimeKind.Utc));
        }
        if (to is { } t)
        {
            where.Add($"{_createdAt} < ${command.Parameters.Count + 1}");
            command.Parameters.AddWithValue(NpgsqlDbType.TimestampTz, DateTime.SpecifyKind(t, DateTimeKind.Utc));
        }
        command.CommandText = $"SELECT {_selectList} FROM {_table.Name.Quoted}" +
                              (where.Count > 0 ? " WHERE " + string.Join(" AND ", where) : "") +
                              $" ORDER BY {_createdAt}, {_id}";
        return ReadAsync(command, ct);
    }

    /// <summary>The rows with these ids (compared as text, so uuid and text ids both work).</summary>
    public IAsyncEnumerable<OutboxRow> ReadIdsAsync(NpgsqlConnection connection, IReadOnlyList<string> ids, CancellationToken ct)
    {
        var command = new NpgsqlCommand(
            $"SELECT {_selectList} FROM {_table.Name.Quoted} WHERE {_id}::text = ANY($1) ORDER BY {_createdAt}, {_id}", connection);
        command.Parameters.AddWithValue(ids.ToArray());
        return ReadAsync(command, ct);
    }

    /// <summary>Streams the command's rows (Npgsql reads them as they come: memory stays bounded for any table size).</summary>
    async IAsyncEnumerable<OutboxRow> ReadAsync(NpgsqlCommand command, [EnumeratorCancellation] CancellationToken ct)
    {
        await using var _ = command;
        await using var reader = await command.ExecuteReaderAsync(ct);
        while (await reader.ReadAsync(ct))
        {
            var row = OutboxRowReader.NewRow(_layout);
            for (var i = 0; i < _layout.Columns.Length; i++)
                OutboxRowReader.Decode(row, i, await reader.IsDBNullAsync(i, ct) ? null : await reader.GetFieldValueAsync<byte[]>(i, ct), _layout);
            yield return row;
        }
    }
}
