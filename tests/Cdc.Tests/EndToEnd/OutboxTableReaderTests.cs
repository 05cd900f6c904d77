using System.Text;
using Cdc.Contracts;
using Cdc.Embedded;
using Cdc.Mapping;
using Cdc.Replication;
using Cdc.Table;
using Cdc.Tests.Fixtures;
using Npgsql;
using Xunit.Abstractions;

namespace Cdc.Tests.EndToEnd;

/// <summary>
/// <see cref="OutboxTableReader"/>, the reader of outbox rows by query that the polling relay uses (and the snapshot,
/// backfill and re-publishing can): the same <see cref="OutboxRow"/> as the slot reader, values that cannot be decoded
/// never throwing, keyset pages in (created_at, id) order, the inserting transaction's id and commit time.
/// </summary>
public class OutboxTableReaderTests(ITestOutputHelper output, ServersFixture fixture) : IClassFixture<ServersFixture>
{
    static async Task<(OutboxTableReader Reader, NpgsqlConnection Connection)> ReaderAsync(string connectionString, string table, OutboxColumns? columns = null)
    {
        var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        TableName.TryParse(table, out var name, out _);
        var found = await OutboxSlot.FindTableAsync(connection, name, CancellationToken.None);
        return (await OutboxTableReader.CreateAsync(connection, found, columns ?? new OutboxColumns(), CancellationToken.None), connection);
    }

    static async Task<List<TableRow>> ReadAsync(OutboxTableReader reader, NpgsqlConnection connection, string sql, params NpgsqlParameter[] parameters)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        command.Parameters.AddRange(parameters);
        var rows = new List<TableRow>();
        await foreach (var row in reader.ReadAsync(command, CancellationToken.None))
            rows.Add(row);
        return rows;
    }

    [Fact]
    public async Task Rows_read_as_the_slot_reader_reads_them_with_their_transaction_and_place()
    {
        var servers = await fixture.GetAsync();
        var table = $"public.{TestNames.Unique("reader")}";
        await Sql.ExecuteAsync(servers.PostgresConnectionString, $"""
            CREATE TABLE {table} (
              note text, id uuid PRIMARY KEY, aggregate_type text, aggregate_id varchar(40) NOT NULL, event_type text NOT NULL,
              payload jsonb NOT NULL, headers jsonb, created_at timestamptz NOT NULL DEFAULT now());
            """);
        var id = Guid.NewGuid();
        var xmin = await Sql.ScalarAsync<string>(servers.PostgresConnectionString, $$"""
            INSERT INTO {{table}} (note, id, aggregate_type, aggregate_id, event_type, payload, headers, created_at)
            VALUES ('other column', '{{id}}', 'order', 'o-1', 'Placed', '{"b": [1, 2], "a": "é"}', '{"traceparent": "00-x"}', '2026-03-04T05:06:07.123456Z')
            RETURNING xmin::text
            """);
        var nullHeaders = Guid.NewGuid();
        await Sql.ExecuteAsync(servers.PostgresConnectionString,
            $"INSERT INTO {table} (id, aggregate_type, aggregate_id, event_type, payload) VALUES ('{nullHeaders}', NULL, 'o-2', 'Null', '{{}}')");

        var (reader, connection) = await ReaderAsync(servers.PostgresConnectionString, table);
        await using var _ = connection;
        var rows = await ReadAsync(reader, connection, $"SELECT {reader.Columns} FROM {reader.From} ORDER BY {reader.OrderBy}");

        Assert.Equal(2, rows.Count);
        var row = rows[0];
        Assert.Equal(id.ToString("D"), row.Row.Id);
        Assert.Equal("order", row.Row.AggregateType);
        Assert.Equal("o-1", row.Row.AggregateId);
        Assert.Equal("Placed", row.Row.EventType);
        Assert.Equal("""{"a": "é", "b": [1, 2]}""", Encoding.UTF8.GetString(row.Row.Payload!)); // as PostgreSQL renders jsonb
        Assert.Equal(PayloadKind.Json, row.Row.PayloadKind);
        Assert.Equal("""{"traceparent": "00-x"}""", Encoding.UTF8.GetString(row.Row.Headers!));
        Assert.Equal(new DateTime(2026, 3, 4, 5, 6, 7, DateTimeKind.Utc).AddTicks(1_234_560), row.Row.CreatedAt);
        Assert.Equal(DateTimeKind.Utc, row.Row.CreatedAt!.Value.Kind);
        Assert.Null(row.Row.ReadError);
        Assert.Equal(uint.Parse(xmin), row.Xmin);
        Assert.Null(row.CommitTime); // track_commit_timestamp is off on the test server
        Assert.Equal(row.Row.CreatedAt, row.CommitTimeOrCreatedAt);
        Assert.Equal(await Sql.ScalarAsync<uint>(servers.PostgresConnectionString, $"SELECT '{table}'::regclass::oid"), row.TableOid);
        Assert.Equal(1L, await Sql.ScalarAsync<long>(servers.PostgresConnectionString,
            $"SELECT count(*) FROM {table} WHERE ctid = $1::tid AND id = '{id}'", $"({row.Ctid.BlockNumber},{row.Ctid.OffsetNumber})"));

        Assert.Null(rows[1].Row.AggregateType);
        Assert.Null(rows[1].Row.Headers);
        Assert.Null(rows[1].Row.ReadError);
    }

    [Fact]
    public async Task Bytea_payloads_text_ids_renamed_columns_and_no_headers_column_are_read()
    {
        var servers = await fixture.GetAsync();
        var table = $"public.{TestNames.Unique("reader")}";
        await Sql.ExecuteAsync(servers.PostgresConnectionString, $"""
            CREATE TABLE {table} (
              event_id text PRIMARY KEY, kind text NOT NULL, key text NOT NULL, type text NOT NULL,
              body bytea NOT NULL, at timestamptz NOT NULL DEFAULT now());
            INSERT INTO {table} VALUES ('evt-1', 'blob', 'b-1', 'Blob', '\x00ff01', now());
            """);
        var columns = new OutboxColumns
        {
            Id = "event_id", AggregateType = "kind", AggregateId = "key", EventType = "type", Payload = "body", Headers = "", CreatedAt = "at",
        };
        var (reader, connection) = await ReaderAsync(servers.PostgresConnectionString, table, columns);
        await using var _ = connection;
        var row = Assert.Single(await ReadAsync(reader, connection, $"SELECT {reader.Columns} FROM {reader.From}"));

        Assert.Equal("evt-1", row.Row.Id);
        Assert.Equal(new byte[] { 0, 255, 1 }, row.Row.Payload);
        Assert.Equal(PayloadKind.Bytes, row.Row.PayloadKind);
        Assert.Null(row.Row.Headers);
        Assert.Null(row.Row.ReadError);
        Assert.Equal($"{reader.From}.\"at\", {reader.From}.\"event_id\"", reader.OrderBy);
    }

    [Fact]
    public async Task Keyset_pages_return_every_row_once_in_order_even_past_rows_whose_values_cannot_be_decoded()
    {
        var servers = await fixture.GetAsync();
        await using var outbox = await OutboxHarness.CreateAsync(servers, output, ["order"]);
        var table = outbox.Options.Postgres.Table;
        // 25 rows sharing one created_at (one transaction); two whose created_at no event can carry; and two whose
        // created_at sort one way as timestamps and the other way as text (44 BC, year 1).
        var written = Enumerable.Range(0, 25).Select(i => new TestEvent("order", $"o-{i}", $"E{i}")).ToArray();
        await outbox.CommitAsync(written);
        var early = Guid.NewGuid();
        var late = Guid.NewGuid();
        var bc = Guid.NewGuid();
        var yearOne = Guid.NewGuid();
        await outbox.ExecuteAsync($"""
            INSERT INTO {table} (id, aggregate_type, aggregate_id, event_type, payload, created_at) VALUES
              ('{early}', 'order', 'x', 'Early', '{"{}"}', '-infinity'), ('{late}', 'order', 'x', 'Late', '{"{}"}', 'infinity'),
              ('{yearOne}', 'order', 'x', 'YearOne', '{"{}"}', '0001-01-01 00:00:00+00'), ('{bc}', 'order', 'x', 'BC', '{"{}"}', '0044-03-15 00:00:00+00 BC')
            """);

        var (reader, connection) = await ReaderAsync(outbox.ConnectionString, table);
        await using var _ = connection;
        var pages = new List<List<TableRow>>();
        var first = await ReadAsync(reader, connection, $"SELECT {reader.Columns} FROM {reader.From} ORDER BY {reader.OrderBy} LIMIT 4");
        pages.Add(first);
        while (pages[^1].Count == 4)
            pages.Add(await ReadAsync(reader, connection,
                $"SELECT {reader.Columns} FROM {reader.From} WHERE {reader.After(1)} ORDER BY {reader.OrderBy} LIMIT 4",
                OutboxTableReader.AfterParameters(pages[^1][^1])));

        var rows = pages.SelectMany(p => p).ToList();
        Assert.Equal(29, rows.Count);
        Assert.Equal([early, bc, yearOne], rows[..3].Select(r => Guid.Parse(r.Row.Id)));
        Assert.Equal(late.ToString("D"), rows[^1].Row.Id);
        Assert.Contains("created_at is infinity", rows[0].Row.ReadError);
        Assert.Contains("outside the years 1 to 9999", rows[1].Row.ReadError);
        Assert.Null(rows[2].Row.ReadError);
        Assert.Contains("created_at is infinity", rows[^1].Row.ReadError);
        var middle = rows[3..^1];
        Assert.All(middle, r => Assert.Null(r.Row.ReadError));
        // Same created_at: id order (uuid order is the order of their lower-case text).
        Assert.Equal(written.Select(e => e.Id.ToString("D")).Order(StringComparer.Ordinal), middle.Select(r => r.Row.Id));
    }

    [Fact]
    public async Task With_track_commit_timestamp_on_the_commit_time_is_the_transactions()
    {
        await using var postgres = await EmbeddedPostgres.StartAsync(new EmbeddedPostgresOptions
        {
            Settings = new Dictionary<string, string> { ["track_commit_timestamp"] = "on" },
        });
        var table = "public.outbox";
        await Sql.ExecuteAsync(postgres.ConnectionString, Cdc.Outbox.OutboxSchema.CreateTableSql());
        await Sql.ExecuteAsync(postgres.ConnectionString,
            $"INSERT INTO {table} (id, aggregate_type, aggregate_id, event_type, payload, created_at) VALUES (gen_random_uuid(), 'order', 'o', 'E', '{{}}', '2001-01-01Z')");
        var committed = await Sql.ScalarAsync<DateTime>(postgres.ConnectionString, $"SELECT pg_xact_commit_timestamp(xmin) FROM {table}");

        var (reader, connection) = await ReaderAsync(postgres.ConnectionString, table);
        await using var _ = connection;
        var row = Assert.Single(await ReadAsync(reader, connection, $"SELECT {reader.Columns} FROM {reader.From}"));
        Assert.Equal(committed, row.CommitTime);
        Assert.Equal(committed, row.CommitTimeOrCreatedAt);
        Assert.NotEqual(row.Row.CreatedAt, row.CommitTimeOrCreatedAt);
    }
}
