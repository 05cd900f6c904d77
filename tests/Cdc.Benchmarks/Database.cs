using System.Diagnostics;
using System.Threading.Channels;
using Npgsql;
using NpgsqlTypes;

namespace Cdc.Benchmarks;

/// <summary>What the generated rows look like.</summary>
enum Workload
{
    /// <summary>The suite's: aggregate type <c>order</c> (one topic), a jsonb payload of about 215 bytes.</summary>
    Suite,
    /// <summary>Issue 11's: aggregate types <c>order</c>, <c>payment</c>, <c>shipment</c> in turn (three topics), about 150 bytes of jsonb.</summary>
    ThreeTopics,
}

/// <summary>The benchmark's tables, slots and row generator on the throwaway server.</summary>
sealed class Database(string connectionString, Workload workload = Workload.Suite)
{
    public const string Publication = "bench_pub";
    public const string Topic = "outbox.event.order";
    /// <summary>The aggregate types of <see cref="Workload.ThreeTopics"/>; each is a topic <c>outbox.event.&lt;type&gt;</c>.</summary>
    public static readonly string[] ThreeTopicTypes = ["order", "payment", "shipment"];

    public string ConnectionString { get; } = connectionString;

    /// <summary>
    /// One row of the generated outbox: aggregate "order" (one topic), 10,000 aggregate ids, a jsonb payload of about
    /// 200 bytes and a headers object with a traceparent, as services write them. <c>$1..$2</c> number the rows.
    /// </summary>
    public static string InsertSql(string table) => $"""
        INSERT INTO {table} (id, aggregate_type, aggregate_id, event_type, payload, headers)
        SELECT gen_random_uuid(), 'order', 'order-' || (g % 10000), 'OrderPlaced',
               jsonb_build_object('orderId', g, 'customerId', 'customer-' || (g % 5000), 'currency', 'EUR',
                                  'total', round((g % 100000) / 100.0, 2),
                                  'lines', jsonb_build_array(jsonb_build_object('sku', 'SKU-' || (g % 997), 'qty', 1 + g % 5, 'price', 19.99)),
                                  'note', md5(g::text) || md5((g + 1)::text)),
               jsonb_build_object('traceparent', '00-' || md5(g::text) || '-' || substr(md5((g + 7)::text), 1, 16) || '-01')
        FROM generate_series($1::bigint, $2::bigint) AS g
        """;

    /// <summary>
    /// The rows of <see cref="Workload.ThreeTopics"/>: aggregate types order, payment and shipment in turn (row g has
    /// type g % 3), 10,000 aggregate ids, an event type per aggregate type, a jsonb payload of about 150 bytes as
    /// PostgreSQL renders it, and the same traceparent headers object as the suite's rows.
    /// </summary>
    public static string ThreeTopicsInsertSql(string table) => $"""
        INSERT INTO {table} (id, aggregate_type, aggregate_id, event_type, payload, headers)
        SELECT gen_random_uuid(), (ARRAY['order', 'payment', 'shipment'])[1 + g % 3], 'agg-' || (g % 10000),
               (ARRAY['OrderPlaced', 'PaymentCaptured', 'ShipmentDispatched'])[1 + g % 3],
               jsonb_build_object('id', g, 'customerId', 'customer-' || (g % 5000), 'currency', 'EUR',
                                  'total', round((g % 100000) / 100.0, 2), 'sku', 'SKU-' || (g % 997), 'qty', 1 + g % 5,
                                  'note', md5(g::text)),
               jsonb_build_object('traceparent', '00-' || md5(g::text) || '-' || substr(md5((g + 7)::text), 1, 16) || '-01')
        FROM generate_series($1::bigint, $2::bigint) AS g
        """;

    /// <summary>The INSERT of this database's workload, <c>$1..$2</c> numbering the rows.</summary>
    public string Insert(string table) => workload == Workload.ThreeTopics ? ThreeTopicsInsertSql(table) : InsertSql(table);

    public async Task CreateSchemaAsync()
    {
        await ExecAsync(Cdc.Outbox.OutboxSchema.CreateTableSql() + """
            CREATE TABLE public.outbox_poll (LIKE public.outbox INCLUDING ALL);
            CREATE INDEX ON public.outbox_poll (created_at, id);
            CREATE PUBLICATION bench_pub FOR TABLE public.outbox WITH (publish = 'insert');
            """);
    }

    public Task CreateSlotAsync(string slot) =>
        ExecAsync($"SELECT pg_create_logical_replication_slot('{slot}', 'pgoutput')");

    public Task DropSlotAsync(string slot) =>
        ExecAsync($"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '{slot}'");

    public async Task<ulong> CurrentLsnAsync() =>
        (ulong)(NpgsqlLogSequenceNumber)(await ScalarAsync("SELECT pg_current_wal_lsn()"))!;

    public async Task<ulong> ConfirmedLsnAsync(string slot)
    {
        var value = await ScalarAsync($"SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '{slot}'");
        return value is NpgsqlLogSequenceNumber lsn ? (ulong)lsn : 0;
    }

    /// <summary>Waits until the slot's confirmed position reaches <paramref name="lsn"/>; returns false on timeout.</summary>
    public async Task<bool> WaitConfirmedAsync(string slot, ulong lsn, TimeSpan timeout, Func<bool>? abort = null)
    {
        var sw = Stopwatch.StartNew();
        await using var connection = await OpenAsync();
        await using var command = new NpgsqlCommand("SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = $1", connection);
        command.Parameters.AddWithValue(slot);
        while (sw.Elapsed < timeout)
        {
            if (await command.ExecuteScalarAsync() is NpgsqlLogSequenceNumber confirmed && (ulong)confirmed >= lsn)
                return true;
            if (abort?.Invoke() == true)
                return false;
            await Task.Delay(20);
        }
        return false;
    }

    /// <summary>
    /// Writes rows <paramref name="first"/>.. (count of them) in transactions of <paramref name="rowsPerTx"/> rows from
    /// <paramref name="writers"/> connections at once (each INSERT is its own transaction, committed with
    /// synchronous_commit on). Returns the elapsed time.
    /// </summary>
    public async Task<TimeSpan> WriteRowsAsync(string table, long first, long count, int rowsPerTx, int writers)
    {
        var sql = Insert(table);
        var batches = (count + rowsPerTx - 1) / rowsPerTx;
        long next = -1;
        var sw = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, writers).Select(async _ =>
        {
            await using var connection = await OpenAsync();
            await using var command = new NpgsqlCommand(sql, connection);
            var from = new NpgsqlParameter<long>();
            command.Parameters.Add(from);
            var to = new NpgsqlParameter<long>();
            command.Parameters.Add(to);
            await command.PrepareAsync();
            long batch;
            while ((batch = Interlocked.Increment(ref next)) < batches)
            {
                var start = first + batch * rowsPerTx;
                from.TypedValue = start;
                to.TypedValue = Math.Min(start + rowsPerTx, first + count) - 1;
                await command.ExecuteNonQueryAsync();
            }
        }));
        return sw.Elapsed;
    }

    /// <summary>
    /// Inserts at <paramref name="rate"/> events/s for <paramref name="seconds"/> s, rows <paramref name="first"/>.., in
    /// transactions of <paramref name="rowsPerTx"/> rows from <paramref name="writers"/> connections. A pacer releases a
    /// transaction whenever the schedule is due one; when the writers fall behind, the achieved rate says so.
    /// Returns the rows written, the time until the last commit, and the next free row number.
    /// </summary>
    public async Task<(long Rows, double Seconds, long Next)> PacedWriteAsync(long first, double rate, double seconds, int rowsPerTx, int writers)
    {
        var queue = Channel.CreateUnbounded<long>(new UnboundedChannelOptions { SingleReader = false, SingleWriter = true });
        var sql = Insert("public.outbox");
        long rows = 0;
        var clock = Stopwatch.StartNew();
        var tasks = Enumerable.Range(0, writers).Select(async _ =>
        {
            await using var connection = await OpenAsync();
            await using var command = new NpgsqlCommand(sql, connection);
            var from = new NpgsqlParameter<long>();
            command.Parameters.Add(from);
            var to = new NpgsqlParameter<long>();
            command.Parameters.Add(to);
            await command.PrepareAsync();
            await foreach (var start in queue.Reader.ReadAllAsync())
            {
                from.TypedValue = start;
                to.TypedValue = start + rowsPerTx - 1;
                await command.ExecuteNonQueryAsync();
                Interlocked.Add(ref rows, rowsPerTx);
            }
        }).ToArray();

        long issued = 0;
        var next = first;
        while (clock.Elapsed.TotalSeconds < seconds)
        {
            var due = (long)(rate * clock.Elapsed.TotalSeconds);
            while (issued + rowsPerTx <= due)
            {
                queue.Writer.TryWrite(next);
                next += rowsPerTx;
                issued += rowsPerTx;
            }
            await Task.Delay(1);
        }
        queue.Writer.Complete();
        await Task.WhenAll(tasks);
        return (rows, clock.Elapsed.TotalSeconds, next);
    }

    public async Task<NpgsqlConnection> OpenAsync()
    {
        var connection = new NpgsqlConnection(ConnectionString);
        await connection.OpenAsync();
        return connection;
    }

    public async Task ExecAsync(string sql)
    {
        await using var connection = await OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection) { CommandTimeout = 0 };
        await command.ExecuteNonQueryAsync();
    }

    public async Task<object?> ScalarAsync(string sql)
    {
        await using var connection = await OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection) { CommandTimeout = 0 };
        return await command.ExecuteScalarAsync();
    }
}
