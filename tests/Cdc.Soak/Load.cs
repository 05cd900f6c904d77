using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using Npgsql;
using NpgsqlTypes;

namespace Cdc.Soak;

/// <summary>
/// The outbox table and the soak's other tables. The plain outbox is the contract's DDL (the writer library's); the
/// partitioned one is the same columns, <c>PARTITION BY RANGE (created_at)</c> with primary key <c>(id, created_at)</c>
/// and a default partition (partitions for time ranges are attached and detached by the fault injector).
/// </summary>
static class Schema
{
    public const string DefaultPartition = "outbox_default";

    public static string Ddl(SoakOptions options) => Outbox(options) + """
        -- One row per writer transaction, in the same transaction: present exactly when the transaction committed.
        -- It settles commits whose outcome the writer could not see (the server crashed during COMMIT), even when the
        -- transaction deleted its own outbox rows.
        CREATE TABLE public.soak_txn (txn_id bigint PRIMARY KEY, writer int NOT NULL, outbox_rows int NOT NULL);
        -- Business data written between the outbox inserts.
        CREATE TABLE public.soak_business (id bigserial PRIMARY KEY, writer int NOT NULL, txn_id bigint NOT NULL, note text NOT NULL);
        CREATE TABLE public.soak_counter (writer int PRIMARY KEY, n bigint NOT NULL);
        """;

    static string Outbox(SoakOptions options)
    {
        if (!options.Partitioned)
            return Cdc.Outbox.OutboxSchema.CreateTableSql(new Cdc.Outbox.OutboxWriterOptions
            {
                PayloadColumnType = options.Bytea ? Cdc.Outbox.PayloadColumnType.Bytea : Cdc.Outbox.PayloadColumnType.Jsonb,
            });
        var payload = options.Bytea ? "bytea" : "jsonb";
        return $"""
            CREATE TABLE public.outbox (
              id uuid NOT NULL,
              aggregate_type text NOT NULL,
              aggregate_id text NOT NULL,
              event_type text NOT NULL,
              payload {payload} NOT NULL,
              headers jsonb,
              created_at timestamptz NOT NULL DEFAULT now(),
              PRIMARY KEY (id, created_at)
            ) PARTITION BY RANGE (created_at);
            CREATE TABLE public.{DefaultPartition} PARTITION OF public.outbox DEFAULT;

            """;
    }
}

/// <summary>
/// The aggregates events belong to: a bounded set, each owned by one writer so its sequence numbers follow commit order.
/// Aggregate number <c>a</c> is of type <c>a / PerType</c>. The base types' topics exist from the start; the fault
/// injector registers new types whose topics do not exist yet (<see cref="Register"/>).
/// </summary>
static class Aggregates
{
    public static readonly string[] BaseTypes = ["order", "customer", "payment"];
    public const int PerType = 40;
    public const int MaxTypes = 64;
    public static int BaseCount => BaseTypes.Length * PerType;

    static readonly Lock s_gate = new();
    static readonly List<string> s_types = [.. BaseTypes];
    static readonly ConcurrentDictionary<string, int> s_byName = new(StringComparer.Ordinal);

    static Aggregates()
    {
        for (var a = 0; a < BaseCount; a++)
            s_byName[Name(a)] = a;
    }

    /// <summary>Adds an aggregate type; returns its index (its aggregates are <c>index * PerType</c> on).</summary>
    public static int Register(string type)
    {
        int index;
        lock (s_gate)
        {
            if (s_types.Count >= MaxTypes)
                throw new InvalidOperationException($"at most {MaxTypes} aggregate types");
            s_types.Add(type);
            index = s_types.Count - 1;
        }
        for (var a = index * PerType; a < (index + 1) * PerType; a++)
            s_byName[Name(a)] = a;
        return index;
    }

    public static string TypeName(int typeIndex)
    {
        lock (s_gate)
            return s_types[typeIndex];
    }

    public static string Type(int aggregate) => TypeName(aggregate / PerType);
    public static string Name(int aggregate) => aggregate < 0 ? "(no aggregate)" : $"{Type(aggregate)}-{aggregate % PerType}";
    public static bool TryParse(string name, out int aggregate) => s_byName.TryGetValue(name, out aggregate);
}

/// <summary>
/// One outbox row the soak generated. <see cref="Seq"/> counts the aggregate's rows in the order they were inserted.
/// An <see cref="Oversized"/> row (no aggregate of the soak's, <see cref="Aggregate"/> -1) must reach the dead-letter topic, not an event topic.
/// </summary>
readonly record struct GeneratedEvent(Guid Id, int Aggregate, int Seq, long Txn, bool RolledBackToSavepoint, bool Deleted, bool Oversized = false);

/// <summary>
/// An unroutable row with a payload over 1 MB, asked for by the fault injector: a writer puts it into its next transaction
/// that is meant to commit. <see cref="Done"/> completes when that transaction's outcome is known (true: committed).
/// </summary>
sealed class OversizedRow(int fault, string aggregateType, string aggregateId, byte[] payload)
{
    public Guid Id { get; } = Guid.NewGuid();
    public int Fault { get; } = fault;
    public string AggregateType { get; } = aggregateType;
    public string AggregateId { get; } = aggregateId;
    public int PayloadBytes { get; } = payload.Length;
    /// <summary>The payload until its transaction's outcome is known (jsonb: its JSON text in UTF-8; bytea: the bytes); then null.</summary>
    public byte[]? Payload { get; set; } = payload;
    public long Txn { get; set; }
    public TaskCompletionSource<bool> Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
}

enum TxnOutcome { Pending, Committed, RolledBack }

/// <summary>What a writer knows about one of its transactions.</summary>
sealed class TxnInfo(long id, int writer, bool intendedRollback, int outboxRows)
{
    public long Id { get; } = id;
    public int Writer { get; } = writer;
    public bool IntendedRollback { get; } = intendedRollback;
    public int OutboxRows { get; } = outboxRows;
    public TxnOutcome Outcome { get; set; }
    /// <summary>COMMIT was sent and the connection failed before its answer: the outcome is unknown until checked.</summary>
    public bool CommitUnknown { get; set; }
    /// <summary>The retry found the marker row: the unknown commit had in fact committed.</summary>
    public bool FoundCommittedOnRetry { get; set; }
    public int Attempts { get; set; }
    /// <summary>Soak clock (seconds) when the outcome became known.</summary>
    public double At { get; set; }
}

/// <summary>
/// Spreads rows over time: a transaction reserves its rows' share of the rate and waits until that share has accrued,
/// so the rate is never exceeded (a large transaction holds the others back) and an outage is not followed by a burst.
/// </summary>
sealed class Pacer(double rowsPerSecond)
{
    readonly Lock _gate = new();
    readonly Stopwatch _clock = Stopwatch.StartNew();
    double _next;

    public Task WaitAsync(int rows, CancellationToken ct)
    {
        double due;
        lock (_gate)
        {
            var now = _clock.Elapsed.TotalSeconds;
            due = Math.Max(now, _next) + Math.Max(1, rows) / rowsPerSecond;
            _next = due;
        }
        var wait = due - _clock.Elapsed.TotalSeconds;
        return wait > 0 ? Task.Delay(TimeSpan.FromSeconds(wait), ct) : Task.CompletedTask;
    }
}

/// <summary>
/// The writers: concurrent tasks, each inserting outbox rows in transactions of varied size with business writes in between,
/// some rolled back, some with a rolled-back savepoint, some deleting or updating their own rows, some touching only
/// other tables. A transaction that fails (the server restarted or crashed) is retried with the same ids; its marker
/// row tells whether an earlier attempt had committed after all. For the fault injector, they also write to extra
/// aggregates (of a new type) for a while, and put an oversized row into a transaction when asked.
/// </summary>
sealed class LoadGenerator(string connectionString, SoakOptions options, RunLog log)
{
    readonly string _connectionString = connectionString;
    readonly SoakOptions _options = options;
    readonly RunLog _log = log;
    readonly Pacer _pacer = new(options.Rate);
    readonly CancellationTokenSource _stop = new();
    readonly List<Writer> _writers = [];
    readonly List<Task> _tasks = [];
    readonly ConcurrentQueue<OversizedRow> _oversizedRequests = new();
    volatile int[] _extra = [];

    /// <summary>Share of rows that go to the extra aggregates while there are any (<see cref="SetExtraAggregates"/>).</summary>
    const double ExtraShare = 0.10;

    /// <summary>Every oversized row a writer took, by id.</summary>
    public ConcurrentDictionary<Guid, OversizedRow> OversizedRows { get; } = new();

    /// <summary>
    /// Aggregates (of a type registered later) that the writers write to as well, alongside their usual ones, until set
    /// back to none: each belongs to the writer that owns its number, so its order is still commit order.
    /// </summary>
    public void SetExtraAggregates(int[] aggregates) => _extra = aggregates;

    /// <summary>A writer puts the row into its next transaction that is meant to commit.</summary>
    public void RequestOversized(OversizedRow row) => _oversizedRequests.Enqueue(row);

    public void Start()
    {
        for (var w = 0; w < _options.Writers; w++)
        {
            var writer = new Writer(w, this, new Random(_options.Seed * 31 + w));
            _writers.Add(writer);
            _tasks.Add(Task.Run(() => writer.RunAsync(_stop.Token)));
        }
    }

    /// <summary>Stops after each writer's current transaction (never mid-transaction).</summary>
    public async Task StopAsync()
    {
        await _stop.CancelAsync();
        await Task.WhenAll(_tasks);
        AbandonRequests();
    }

    public IEnumerable<GeneratedEvent> Events => _writers.SelectMany(w => w.Events);
    public IEnumerable<TxnInfo> Transactions => _writers.SelectMany(w => w.Transactions);
    public int FailedAttempts => _writers.Sum(w => w.FailedAttempts);
    public long RowsInserted => _writers.Sum(w => (long)w.Events.Count);

    /// <summary>Once the writers have stopped: oversized rows still queued were never written.</summary>
    void AbandonRequests()
    {
        while (_oversizedRequests.TryDequeue(out var row))
            row.Done.TrySetResult(false);
    }

    sealed class Writer(int index, LoadGenerator load, Random random)
    {
        readonly int[] _owned = Enumerable.Range(0, Aggregates.BaseCount).Where(a => a % load._options.Writers == index).ToArray();
        readonly int[] _seq = new int[Aggregates.MaxTypes * Aggregates.PerType];
        long _txns;
        bool _failing;

        public List<GeneratedEvent> Events { get; } = [];
        public List<TxnInfo> Transactions { get; } = [];
        public int FailedAttempts { get; private set; }

        public async Task RunAsync(CancellationToken stop)
        {
            await using (var connection = new NpgsqlConnection(load._connectionString))
            {
                await connection.OpenAsync(CancellationToken.None);
                await using var init = new NpgsqlCommand("INSERT INTO soak_counter (writer, n) VALUES ($1, 0)", connection);
                init.Parameters.AddWithValue(index);
                await init.ExecuteNonQueryAsync(CancellationToken.None);
            }
            while (!stop.IsCancellationRequested)
            {
                var plan = Plan();
                try
                {
                    await load._pacer.WaitAsync(plan.Info.OutboxRows, stop);
                }
                catch (OperationCanceledException)
                {
                    // Planned but never started: not a transaction at all.
                    Transactions.Remove(plan.Info);
                    Events.RemoveRange(Events.Count - plan.EventCount, plan.EventCount);
                    if (plan.Oversized is { } row)
                    {
                        load.OversizedRows.TryRemove(row.Id, out _);
                        row.Done.TrySetResult(false);
                    }
                    break;
                }
                await ExecuteAsync(plan);
            }
        }

        abstract record Step;
        sealed record Insert(GeneratedEvent[] Rows) : Step;
        sealed record Business : Step;
        sealed record Savepoint(GeneratedEvent[] Rows) : Step;
        sealed record Update(Guid[] Ids) : Step;
        sealed record Delete(Guid[] Ids) : Step;
        sealed record InsertOversized(OversizedRow Row) : Step;
        sealed record TxnPlan(TxnInfo Info, List<Step> Steps, int EventCount, OversizedRow? Oversized);

        TxnPlan Plan()
        {
            var id = (index + 1) * 1_000_000_000L + ++_txns;
            var roll = random.NextDouble();
            var rollback = roll < 0.08;
            var otherTablesOnly = !rollback && roll < 0.11;
            var rows = otherTablesOnly ? 0
                : random.NextDouble() < 0.002 ? random.Next(1000, 4001) // now and then one large transaction
                : random.NextDouble() < 0.7 ? random.Next(1, 11)
                : random.Next(11, 51);

            var steps = new List<Step>();
            var first = Events.Count;
            var chunks = rows == 0 ? 0 : Math.Min(rows, random.Next(1, 4));
            var savepointAt = !rollback && rows > 0 && random.NextDouble() < 0.05 ? random.Next(chunks + 1) : -1;
            var left = rows;
            for (var c = 0; c <= chunks; c++)
            {
                if (c == savepointAt)
                    steps.Add(new Savepoint(NewEvents(id, random.Next(1, 6), rolledBack: true)));
                if (c == chunks)
                    break;
                var size = c == chunks - 1 ? left : random.Next(1, left - (chunks - c - 1) + 1);
                left -= size;
                steps.Add(new Insert(NewEvents(id, size, rolledBack: false)));
                steps.Add(new Business());
            }
            if (otherTablesOnly)
                steps.Add(new Business());

            // An oversized row asked for: among this transaction's other rows (it is meant to commit).
            OversizedRow? oversized = null;
            if (!rollback && rows > 0 && load._oversizedRequests.TryDequeue(out oversized))
            {
                oversized.Txn = id;
                load.OversizedRows[oversized.Id] = oversized;
                Events.Add(new GeneratedEvent(oversized.Id, -1, 0, id, RolledBackToSavepoint: false, Deleted: false, Oversized: true));
                steps.Insert(random.Next(steps.Count + 1), new InsertOversized(oversized));
            }

            var kept = Enumerable.Range(first, Events.Count - first).Where(i => !Events[i].RolledBackToSavepoint && !Events[i].Oversized).ToList();
            if (kept.Count > 0 && random.NextDouble() < 0.10)
                steps.Add(new Update(Pick(kept, random.Next(1, Math.Min(5, kept.Count) + 1)).Select(i => Events[i].Id).ToArray()));
            if (kept.Count > 0 && random.NextDouble() < 0.15)
            {
                var deleted = Pick(kept, random.Next(1, Math.Min(5, kept.Count) + 1));
                foreach (var i in deleted)
                    Events[i] = Events[i] with { Deleted = true };
                steps.Add(new Delete(deleted.Select(i => Events[i].Id).ToArray()));
            }

            var info = new TxnInfo(id, index, rollback, Events.Count - first);
            Transactions.Add(info);
            return new TxnPlan(info, steps, Events.Count - first, oversized);
        }

        List<int> Pick(List<int> from, int count) => from.OrderBy(_ => random.Next()).Take(count).ToList();

        GeneratedEvent[] NewEvents(long txn, int count, bool rolledBack)
        {
            var events = new GeneratedEvent[count];
            var extra = load._extra.Where(a => a % load._options.Writers == index).ToArray();
            for (var i = 0; i < count; i++)
            {
                var aggregate = extra.Length > 0 && random.NextDouble() < ExtraShare
                    ? extra[random.Next(extra.Length)]
                    : _owned[random.Next(_owned.Length)];
                events[i] = new GeneratedEvent(Guid.NewGuid(), aggregate, ++_seq[aggregate], txn, rolledBack, Deleted: false);
                Events.Add(events[i]);
            }
            return events;
        }

        async Task ExecuteAsync(TxnPlan plan)
        {
            await ExecuteOnceCommittedAsync(plan);
            if (plan.Oversized is { } row)
            {
                row.Payload = null; // written (or never will be): no attempt needs it again
                row.Done.TrySetResult(plan.Info.Outcome == TxnOutcome.Committed);
            }
        }

        async Task ExecuteOnceCommittedAsync(TxnPlan plan)
        {
            var info = plan.Info;
            var backoff = TimeSpan.FromMilliseconds(200);
            while (true)
            {
                info.Attempts++;
                var committing = false;
                try
                {
                    await using var connection = new NpgsqlConnection(load._connectionString);
                    await connection.OpenAsync();
                    await using var tx = await connection.BeginTransactionAsync();
                    try
                    {
                        await ExecAsync(connection, "INSERT INTO soak_txn (txn_id, writer, outbox_rows) VALUES ($1, $2, $3)",
                            info.Id, index, info.OutboxRows);
                    }
                    catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.UniqueViolation)
                    {
                        // An earlier attempt whose COMMIT went unanswered did commit.
                        info.Outcome = TxnOutcome.Committed;
                        info.FoundCommittedOnRetry = true;
                        info.At = load._log.Elapsed;
                        Recovered();
                        return;
                    }
                    foreach (var step in plan.Steps)
                        await RunStepAsync(connection, info.Id, step);
                    if (info.IntendedRollback)
                    {
                        await tx.RollbackAsync();
                        info.Outcome = TxnOutcome.RolledBack;
                        info.At = load._log.Elapsed;
                        Recovered();
                        return;
                    }
                    committing = true;
                    await tx.CommitAsync();
                    info.Outcome = TxnOutcome.Committed;
                    info.At = load._log.Elapsed;
                    Recovered();
                    return;
                }
                catch (Exception e) when (IsTransient(e))
                {
                    FailedAttempts++;
                    if (info.IntendedRollback)
                    {
                        info.Outcome = TxnOutcome.RolledBack; // never committed, whatever happened
                        info.At = load._log.Elapsed;
                        return;
                    }
                    if (committing)
                        info.CommitUnknown = true;
                    if (!_failing)
                        load._log.Info($"writer {index}: transaction {info.Id} failed{(committing ? " during COMMIT (outcome unknown)" : "")}: " +
                                      $"{e.GetType().Name}: {e.Message.Split('\n')[0]}; retrying with the same ids");
                    _failing = true;
                    // Pooled connections to the old server process are dead: drop them all.
                    NpgsqlConnection.ClearAllPools();
                    await Task.Delay(backoff);
                    backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, TimeSpan.FromSeconds(2).Ticks));
                }
            }
        }

        void Recovered()
        {
            if (!_failing)
                return;
            _failing = false;
            load._log.Info($"writer {index}: writing again");
        }

        async Task RunStepAsync(NpgsqlConnection connection, long txn, Step step)
        {
            switch (step)
            {
                case Insert insert:
                    await InsertAsync(connection, insert.Rows, load._options.Bytea);
                    break;
                case InsertOversized oversized:
                    await InsertOversizedAsync(connection, oversized.Row, load._options.Bytea);
                    break;
                case Savepoint savepoint:
                    await ExecAsync(connection, "SAVEPOINT soak");
                    await InsertAsync(connection, savepoint.Rows, load._options.Bytea);
                    await ExecAsync(connection, "ROLLBACK TO SAVEPOINT soak");
                    break;
                case Business:
                    await ExecAsync(connection, "INSERT INTO soak_business (writer, txn_id, note) VALUES ($1, $2, 'between outbox rows')", index, txn);
                    await ExecAsync(connection, "UPDATE soak_counter SET n = n + 1 WHERE writer = $1", index);
                    break;
                case Update update:
                    // UPDATEs publish nothing (the contract); the reader flags any record whose event_type says "updated".
                    await ExecAsync(connection, "UPDATE outbox SET event_type = event_type || '.updated' WHERE id = ANY($1)", update.Ids);
                    break;
                case Delete delete:
                    await ExecAsync(connection, "DELETE FROM outbox WHERE id = ANY($1)", delete.Ids);
                    break;
            }
        }

        static async Task InsertOversizedAsync(NpgsqlConnection connection, OversizedRow row, bool bytea)
        {
            await using var command = new NpgsqlCommand(
                $"INSERT INTO outbox (id, aggregate_type, aggregate_id, event_type, payload, headers) VALUES ($1, $2, $3, 'Oversized', $4::{(bytea ? "bytea" : "jsonb")}, $5)",
                connection);
            command.Parameters.AddWithValue(row.Id);
            command.Parameters.AddWithValue(row.AggregateType);
            command.Parameters.AddWithValue(row.AggregateId);
            var payload = row.Payload ?? throw new InvalidOperationException("oversized row inserted after its transaction ended");
            command.Parameters.Add(bytea
                ? new NpgsqlParameter { Value = payload, NpgsqlDbType = NpgsqlDbType.Bytea }
                : new NpgsqlParameter { Value = Encoding.UTF8.GetString(payload), NpgsqlDbType = NpgsqlDbType.Jsonb });
            command.Parameters.Add(new NpgsqlParameter
            {
                Value = string.Create(CultureInfo.InvariantCulture, $$"""{"soak-oversized":"fault {{row.Fault}}"}"""),
                NpgsqlDbType = NpgsqlDbType.Jsonb,
            });
            await command.ExecuteNonQueryAsync();
        }

        static async Task InsertAsync(NpgsqlConnection connection, GeneratedEvent[] rows, bool bytea)
        {
            var ids = new Guid[rows.Length];
            var types = new string[rows.Length];
            var aggregateIds = new string[rows.Length];
            var eventTypes = new string[rows.Length];
            var payloads = new string[rows.Length];
            var payloadBytes = bytea ? new byte[rows.Length][] : null;
            var headers = new string[rows.Length];
            for (var i = 0; i < rows.Length; i++)
            {
                var e = rows[i];
                ids[i] = e.Id;
                types[i] = Aggregates.Type(e.Aggregate);
                aggregateIds[i] = Aggregates.Name(e.Aggregate);
                eventTypes[i] = e.Seq % 2 == 0 ? "Changed" : "Touched";
                payloads[i] = Payload(e);
                if (payloadBytes is not null)
                    payloadBytes[i] = Encoding.UTF8.GetBytes(payloads[i]);
                headers[i] = string.Create(CultureInfo.InvariantCulture, $$"""{"soak-seq":"{{e.Seq}}","soak-txn":"{{e.Txn}}"}""");
            }
            // WITH ORDINALITY ... ORDER BY: rows are inserted in array order, so sequence numbers follow WAL order.
            // bytea: the same JSON text as bytes (the reader parses the payload either way).
            await using var command = new NpgsqlCommand($"""
                INSERT INTO outbox (id, aggregate_type, aggregate_id, event_type, payload, headers)
                SELECT id, aggregate_type, aggregate_id, event_type, payload, headers
                FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::{(bytea ? "bytea" : "jsonb")}[], $6::jsonb[])
                     WITH ORDINALITY AS u(id, aggregate_type, aggregate_id, event_type, payload, headers, n)
                ORDER BY n
                """, connection);
            command.Parameters.Add(new NpgsqlParameter { Value = ids, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Uuid });
            command.Parameters.Add(new NpgsqlParameter { Value = types, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text });
            command.Parameters.Add(new NpgsqlParameter { Value = aggregateIds, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text });
            command.Parameters.Add(new NpgsqlParameter { Value = eventTypes, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text });
            command.Parameters.Add(payloadBytes is null
                ? new NpgsqlParameter { Value = payloads, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Jsonb }
                : new NpgsqlParameter { Value = payloadBytes, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Bytea });
            command.Parameters.Add(new NpgsqlParameter { Value = headers, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Jsonb });
            await command.ExecuteNonQueryAsync();
        }

        static string Payload(GeneratedEvent e)
        {
            // Some padding so record sizes vary (0..400 bytes), deterministic per event.
            var pad = new string('x', (int)((uint)e.Id.GetHashCode() % 401));
            return string.Create(CultureInfo.InvariantCulture,
                $$"""{"seq":{{e.Seq}},"aggregate":"{{Aggregates.Name(e.Aggregate)}}","txn":{{e.Txn}},"pad":"{{pad}}"}""");
        }

        static async Task ExecAsync(NpgsqlConnection connection, string sql, params object[] parameters)
        {
            await using var command = new NpgsqlCommand(sql, connection);
            foreach (var p in parameters)
                command.Parameters.AddWithValue(p);
            await command.ExecuteNonQueryAsync();
        }

        /// <summary>Connection-level trouble (the server restarting or crashing); anything else is a bug of the soak.</summary>
        static bool IsTransient(Exception e) => e switch
        {
            PostgresException pg => pg.SqlState[..2] is "08" or "57" or "53" or "58" or "40",
            NpgsqlException or IOException or System.Net.Sockets.SocketException or TimeoutException => true,
            _ => false,
        };
    }
}
