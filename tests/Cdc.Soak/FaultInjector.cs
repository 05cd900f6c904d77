using System.Globalization;
using Cdc.Embedded;
using Confluent.Kafka;
using Npgsql;

namespace Cdc.Soak;

/// <summary>One injected fault, as logged and reported.</summary>
sealed record FaultRecord(int Index, string Kind, double At, double Seconds, string Detail);

/// <summary>
/// A topic_missing fault: rows for <see cref="Topic"/> were written from <see cref="BlockedFrom"/> while it did not exist,
/// it was created at <see cref="CreatedAt"/> (soak clock), and the slot passed everything written until then after
/// <see cref="ResumedSeconds"/>. <see cref="Start"/> and <see cref="End"/> are the healthy topics' high watermarks (by
/// topic index) around that window: the records between them were produced during it, and none may be a re-send (null:
/// the cluster did not answer, and the window could not be checked, which makes the run inconclusive).
/// </summary>
sealed record MissingTopicWindow(int Fault, string Topic, int TypeIndex, double BlockedFrom, double CreatedAt, double? CaughtUpBefore,
    double? ResumedSeconds, Dictionary<int, long[]>? Start, Dictionary<int, long[]>? End, int WarningsWhileBlocked,
    double? WarnedAfterSeconds, int? ReadyzWhileBlocked, int? ReadyzAfter);

/// <summary>An oversized_row fault: the row, whether its transaction committed, and how long until the slot passed it.</summary>
sealed record OversizedFault(int Fault, Guid Id, string AggregateType, int PayloadBytes, bool Committed, long Txn, double? MovedPastSeconds);

/// <summary>A partition attached or detached by partition_cycle (detached: its rows, all relayed before).</summary>
sealed record PartitionChange(int Fault, string Action, string Partition, string Range, long? Rows, double At);

/// <summary>
/// Every 10–40 s (seeded), one fault, run to its end and undone before the next: faults never overlap. Kinds come from a
/// shuffled bag, refilled when empty: the eight original kinds once, the newer ones (topic_missing, oversized_row, and with
/// a partitioned outbox partition_cycle) twice, so each comes a few times in a 10-minute run.
/// </summary>
sealed class FaultInjector(
    SoakOptions options, RunLog log, WorkerSupervisor worker, MockKafkaCluster kafka, EmbeddedPostgres postgres, SlotMonitor monitor,
    LoadGenerator load, KafkaWatermarks watermarks, Action<string, int> topicCreated)
{
    static readonly string[] BaseKinds =
    [
        "worker_sigkill", "worker_sigterm", "kafka_all_down", "kafka_broker_down",
        "kafka_produce_errors", "kafka_rtt", "postgres_restart_fast", "postgres_crash",
    ];

    static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(5) };

    /// <summary>Every kind there is for this outbox.</summary>
    public static string[] AllKinds(SoakOptions options) =>
        [.. BaseKinds, "topic_missing", "oversized_row", .. options.Partitioned ? new[] { "partition_cycle" } : []];

    /// <summary>The kinds this run draws from (<c>--faults</c> narrows them).</summary>
    public string[] Kinds { get; } = options.Faults ?? AllKinds(options);

    /// <summary>Kinds that go into the bag twice.</summary>
    static bool Doubled(string kind) => kind is "topic_missing" or "oversized_row" or "partition_cycle";

    static readonly ErrorCode[] RetriableProduceErrors =
        [ErrorCode.NotEnoughReplicas, ErrorCode.NotLeaderForPartition, ErrorCode.RequestTimedOut];

    readonly Random _random = new(options.Seed);
    readonly Queue<string> _bag = new();
    readonly Lock _gate = new();

    public List<FaultRecord> Faults { get; } = [];
    public List<MissingTopicWindow> MissingTopics { get; } = [];
    public List<OversizedFault> OversizedRows { get; } = [];
    public List<PartitionChange> Partitions { get; } = [];
    /// <summary>Detached partitions (standalone tables now): their rows still count as the outbox's in the final tally.</summary>
    public List<string> DetachedTables { get; } = [];
    /// <summary>What a new fault found wrong in the worker's behaviour (each fails the run).</summary>
    public List<string> Problems { get; } = [];

    readonly List<(string Name, DateTime From, DateTime To)> _attached = [];
    int _lateTypes;
    int _oversized;
    int _partitions;

    /// <summary>What is going on, for the slot monitor's worst-lag notes: the fault in progress or the last one.</summary>
    public string Context
    {
        get
        {
            lock (_gate)
            {
                if (Current is { } current)
                    return $"during fault #{current.Index} {current.Kind}";
                return Faults.Count == 0 ? "before any fault"
                    : string.Create(CultureInfo.InvariantCulture, $"{log.Elapsed - Faults[^1].At - Faults[^1].Seconds:F0}s after fault #{Faults[^1].Index} {Faults[^1].Kind}");
            }
        }
    }

    (int Index, string Kind)? Current { get; set; }

    public async Task RunAsync(CancellationToken stop)
    {
        while (true)
        {
            try
            {
                await Task.Delay(TimeSpan.FromSeconds(10 + 30 * _random.NextDouble()), stop);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            var kind = NextKind();
            var index = Faults.Count + 1;
            var at = log.Elapsed;
            lock (_gate)
                Current = (index, kind);
            string detail;
            try
            {
                detail = await InjectAsync(index, kind); // never cancelled halfway: a fault is always undone
            }
            finally
            {
                lock (_gate)
                    Current = null;
            }
            lock (_gate)
                Faults.Add(new FaultRecord(index, kind, Math.Round(at, 1), Math.Round(log.Elapsed - at, 1), detail));
        }
    }

    string NextKind()
    {
        if (_bag.Count == 0)
            foreach (var kind in Kinds.SelectMany(k => Doubled(k) ? new[] { k, k } : [k]).OrderBy(_ => _random.Next()))
                _bag.Enqueue(kind);
        return _bag.Dequeue();
    }

    async Task<string> InjectAsync(int index, string kind)
    {
        string Start(string what)
        {
            log.Info($"fault #{index} {kind}: {what}");
            return what;
        }

        switch (kind)
        {
            case "worker_sigkill":
            {
                var pause = TimeSpan.FromSeconds(2 * _random.NextDouble());
                var detail = Start($"SIGKILL worker pid {worker.Pid}, start a new one after {pause.TotalSeconds:F1} s");
                await worker.KillAndRestartAsync(pause);
                return detail;
            }
            case "worker_sigterm":
            {
                var detail = Start($"SIGTERM worker pid {worker.Pid} (must exit 0 within 30 s), then start a new one");
                var (took, exitCode) = await worker.TerminateAsync(TimeSpan.FromSeconds(30), restartAfter: TimeSpan.FromMilliseconds(200));
                return string.Create(CultureInfo.InvariantCulture,
                    $"{detail}: exit code {exitCode?.ToString(CultureInfo.InvariantCulture) ?? "none (killed)"} after {took.TotalSeconds:F1} s");
            }
            case "kafka_all_down":
            {
                var seconds = 2 + 18 * _random.NextDouble();
                var detail = Start(string.Create(CultureInfo.InvariantCulture,
                    $"all 3 brokers down for {seconds:F1} s ({(seconds * 1000 > options.MessageTimeoutMs ? "longer" : "shorter")} than message.timeout.ms {options.MessageTimeoutMs})"));
                kafka.SetAllBrokersDown();
                try
                {
                    await Task.Delay(TimeSpan.FromSeconds(seconds));
                }
                finally
                {
                    kafka.SetAllBrokersUp();
                    log.Info($"fault #{index}: brokers up");
                }
                return detail;
            }
            case "kafka_broker_down":
            {
                var broker = _random.Next(1, kafka.BrokerCount + 1);
                var seconds = 2 + 18 * _random.NextDouble();
                var detail = Start(string.Create(CultureInfo.InvariantCulture,
                    $"broker {broker} down for {seconds:F1} s (the mock does not move its partitions' leadership)"));
                kafka.SetBrokerDown(broker);
                try
                {
                    await Task.Delay(TimeSpan.FromSeconds(seconds));
                }
                finally
                {
                    kafka.SetBrokerUp(broker);
                    log.Info($"fault #{index}: broker {broker} up");
                }
                return detail;
            }
            case "kafka_produce_errors":
            {
                var errors = Enumerable.Range(0, _random.Next(3, 31))
                    .Select(_ => RetriableProduceErrors[_random.Next(RetriableProduceErrors.Length)]).ToArray();
                var summary = string.Join(", ", errors.GroupBy(e => e).Select(g => $"{g.Count()}× {g.Key}"));
                var detail = Start($"the next {errors.Length} Produce requests fail: {summary}");
                kafka.PushRequestErrors(MockKafkaCluster.ProduceApiKey, errors);
                await Task.Delay(TimeSpan.FromSeconds(5)); // let them be consumed before anything else happens
                return detail;
            }
            case "kafka_rtt":
            {
                var rtt = _random.Next(200, 1001);
                var seconds = 5 + 25 * _random.NextDouble();
                var detail = Start(string.Create(CultureInfo.InvariantCulture, $"every broker answers {rtt} ms late for {seconds:F1} s"));
                for (var id = 1; id <= kafka.BrokerCount; id++)
                    kafka.SetBrokerRtt(id, rtt);
                try
                {
                    await Task.Delay(TimeSpan.FromSeconds(seconds));
                }
                finally
                {
                    for (var id = 1; id <= kafka.BrokerCount; id++)
                        kafka.SetBrokerRtt(id, 0);
                    log.Info($"fault #{index}: broker RTT back to 0");
                }
                return detail;
            }
            case "postgres_restart_fast":
            case "postgres_crash":
            {
                var mode = kind == "postgres_crash" ? "immediate" : "fast";
                var detail = Start($"PostgreSQL restart, pg_ctl stop -m {mode}{(mode == "immediate" ? " (a crash: recovery on start)" : "")}");
                await RestartPostgresAsync(mode);
                return detail;
            }
            case "topic_missing":
                return await MissingTopicAsync(index, Start);
            case "oversized_row":
                return await OversizedRowAsync(index, Start);
            case "partition_cycle":
                return await PartitionCycleAsync(index, Start);
            default:
                throw new InvalidOperationException(kind);
        }
    }

    void Problem(int index, string what)
    {
        var line = string.Create(CultureInfo.InvariantCulture, $"+{log.Elapsed:F0}s fault #{index}: {what}");
        lock (_gate)
            Problems.Add(line);
        log.Info("PROBLEM: " + line);
    }

    /// <summary>
    /// Waits until the slot is confirmed past everything written so far; the seconds it took, or null after
    /// <paramref name="timeout"/>.
    /// </summary>
    async Task<double?> WaitSlotPastNowAsync(TimeSpan timeout)
    {
        var started = log.Elapsed;
        ulong target;
        while (true)
        {
            try
            {
                target = await monitor.CurrentInsertLsnAsync();
                break;
            }
            catch (NpgsqlException) when (log.Elapsed - started < timeout.TotalSeconds)
            {
                await Task.Delay(500);
            }
        }
        while (log.Elapsed - started < timeout.TotalSeconds)
        {
            try
            {
                if (await monitor.ConfirmedFlushLsnAsync() >= target)
                    return Math.Round(log.Elapsed - started, 1);
            }
            catch (NpgsqlException)
            {
            }
            await Task.Delay(200);
        }
        return null;
    }

    async Task<int?> ReadyzAsync()
    {
        if (worker.Url is not { } url)
            return null;
        try
        {
            using var response = await Http.GetAsync(url + "/readyz");
            return (int)response.StatusCode;
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
        {
            return null;
        }
    }

    /// <summary>
    /// A new aggregate type whose topic does not exist (the producer may not auto-create topics, and the mock has no
    /// CreateTopics API, so the worker cannot create it): the writers write to its aggregates among their usual rows
    /// for a while, then the soak creates the topic through the mock, the writers go on a few seconds, and stop. The
    /// worker must hold back only that topic's events, say so once, answer 503 on /readyz meanwhile, and relay them in
    /// order once the topic exists; the healthy topics' records produced meanwhile must hold no re-sends.
    /// The topic stays missing 10–30 s, and in any case until 3 s after the worker said so (at most 60 s): on the mock
    /// the worker only declares the block once its CreateTopics attempt has timed out (10 s, "waiting for controller"),
    /// so a shorter window would end before the blocked state is reached.
    /// </summary>
    async Task<string> MissingTopicAsync(int index, Func<string, string> start)
    {
        // From a steady state: the previous fault's replays must not count as this one's re-sends.
        var caughtUpBefore = await WaitSlotPastNowAsync(TimeSpan.FromSeconds(60));
        var k = ++_lateTypes;
        var type = $"late{k}";
        var topic = SoakRun.TopicOf(type);
        var typeIndex = Aggregates.Register(type);
        var aggregates = Enumerable.Range(typeIndex * Aggregates.PerType, 8).ToArray();
        var blocked = 10 + 20 * _random.NextDouble();
        var after = 3 + 7 * _random.NextDouble();
        var detail = start(string.Create(CultureInfo.InvariantCulture,
            $"rows for {aggregates.Length} aggregates of the new type '{type}' among the usual ones; its topic {topic} does not exist " +
            $"for {blocked:F1} s (at least until 3 s after the worker says so), then is created through the mock API; rows go on {after:F1} s more") +
            (caughtUpBefore is null ? " (the slot had not caught up within 60 s before)" : ""));
        var healthy = Enumerable.Range(0, typeIndex).ToArray();
        var startMarks = await watermarks.HighAsync(healthy, log);
        var blockedFrom = log.Elapsed;
        var warningsBefore = worker.MissingTopicWarnings.GetValueOrDefault(topic);
        load.SetExtraAggregates(aggregates);
        int? readyzBlocked = null;
        double? saidAfter = null;
        int warnings;
        try
        {
            while (true)
            {
                var now = log.Elapsed - blockedFrom;
                if (saidAfter is null && worker.MissingTopicWarnings.GetValueOrDefault(topic) > warningsBefore)
                {
                    // The publisher counts the blocked topic (/readyz) before it logs the warning.
                    saidAfter = Math.Round(now, 1);
                    readyzBlocked = await ReadyzAsync();
                    log.Info(string.Create(CultureInfo.InvariantCulture,
                        $"fault #{index}: the worker said {topic} is missing {saidAfter:F1} s after its first rows were written; /readyz {readyzBlocked?.ToString(CultureInfo.InvariantCulture) ?? "unknown"}"));
                }
                if ((saidAfter is { } said && now >= Math.Max(blocked, said + 3)) || now >= 60)
                    break;
                await Task.Delay(200);
            }
            warnings = worker.MissingTopicWarnings.GetValueOrDefault(topic) - warningsBefore;
            kafka.CreateTopic(topic, partitions: 3, replicationFactor: 3);
            topicCreated(type, typeIndex);
        }
        catch
        {
            load.SetExtraAggregates([]);
            throw;
        }
        var createdAt = log.Elapsed;
        log.Info(string.Create(CultureInfo.InvariantCulture,
            $"fault #{index}: created {topic} (the worker warned {warnings} time(s) while it was missing; /readyz {readyzBlocked?.ToString(CultureInfo.InvariantCulture) ?? "unknown"})"));
        await Task.Delay(TimeSpan.FromSeconds(after));
        load.SetExtraAggregates([]);
        await Task.Delay(TimeSpan.FromSeconds(2)); // transactions planned with the extra aggregates commit
        var resumed = await WaitSlotPastNowAsync(TimeSpan.FromSeconds(120));
        var endMarks = await watermarks.HighAsync(healthy, log);
        var readyzAfter = await ReadyzAsync();
        log.Info(resumed is null
            ? $"fault #{index}: the slot did not pass the rows written for {topic} within 120 s of its creation"
            : string.Create(CultureInfo.InvariantCulture, $"fault #{index}: the slot passed every row written for {topic} {resumed:F1} s after the writes stopped ({log.Elapsed - createdAt:F1} s after the topic was created); /readyz {readyzAfter?.ToString(CultureInfo.InvariantCulture) ?? "unknown"}"));

        if (warnings == 0)
            Problem(index, $"the worker did not say within 60 s that {topic} does not exist");
        else if (warnings > 1)
            Problem(index, $"the worker warned {warnings} times that {topic} does not exist while it was missing (the contract: once)");
        if (readyzBlocked is not null and not 503)
            Problem(index, $"/readyz answered {readyzBlocked} while {topic} was missing (expected 503: delivery blocked)");
        if (resumed is null)
            Problem(index, $"the slot did not pass the rows written for {topic} within 120 s after it was created");
        else if (readyzAfter is not null and not 200)
            Problem(index, $"/readyz answered {readyzAfter} after {topic} was created and the slot caught up (expected 200)");
        lock (_gate)
            MissingTopics.Add(new MissingTopicWindow(index, topic, typeIndex, Math.Round(blockedFrom, 1), Math.Round(createdAt, 1),
                caughtUpBefore, resumed, startMarks, endMarks, warnings, saidAfter, readyzBlocked, readyzAfter));
        return string.Create(CultureInfo.InvariantCulture,
            $"{detail}; missing {createdAt - blockedFrom:F1} s, warned {warnings}× (first after {saidAfter?.ToString("F1", CultureInfo.InvariantCulture) ?? "-"} s), /readyz {readyzBlocked?.ToString(CultureInfo.InvariantCulture) ?? "?"} while missing, " +
            $"{readyzAfter?.ToString(CultureInfo.InvariantCulture) ?? "?"} after; slot past its rows {resumed?.ToString("F1", CultureInfo.InvariantCulture) ?? "NEVER"} s after the writes stopped");
    }

    /// <summary>
    /// An unroutable row (its aggregate type makes an illegal topic name) with a payload over 1 MB, in a writer's next
    /// transaction among its usual rows: its dead letter is too large whole, so it must reach the dead-letter topic without
    /// its payload (checked by the verdict), and the slot must move past it.
    /// </summary>
    async Task<string> OversizedRowAsync(int index, Func<string, string> start)
    {
        var k = ++_oversized;
        var type = _random.Next(4) switch
        {
            0 => $"bad type {k}",
            1 => $"slash/{k}",
            2 => new string('t', 250) + k.ToString(CultureInfo.InvariantCulture),
            _ => $"ümlaut-{k}",
        };
        var size = 1_100_000 + _random.Next(900_001);
        var payload = OversizedPayload(size, new Random(options.Seed * 7919 + k), options.Bytea);
        var row = new OversizedRow(index, type, $"oversized-{k}", payload);
        var shownType = type.Length > 40 ? type[..20] + $"…({type.Length} chars)" : type;
        var detail = start(string.Create(CultureInfo.InvariantCulture,
            $"row {row.Id} with aggregate_type '{shownType}' (no legal topic name) and a {payload.Length:N0}-byte {(options.Bytea ? "bytea" : "jsonb")} payload, in a writer's next transaction"));
        load.RequestOversized(row);
        bool committed;
        try
        {
            committed = await row.Done.Task.WaitAsync(TimeSpan.FromSeconds(60));
        }
        catch (TimeoutException)
        {
            committed = false;
            Problem(index, "no writer wrote the oversized row within 60 s (a problem of the soak)");
        }
        double? movedPast = null;
        if (committed)
        {
            movedPast = await WaitSlotPastNowAsync(TimeSpan.FromSeconds(90));
            if (movedPast is null)
                Problem(index, $"the slot did not move past the oversized row {row.Id} (txn {row.Txn}) within 90 s: the stream is stuck on it");
            else
                log.Info(string.Create(CultureInfo.InvariantCulture, $"fault #{index}: committed in txn {row.Txn}; the slot passed it {movedPast:F1} s later"));
        }
        else
        {
            log.Info($"fault #{index}: the oversized row's transaction did not commit (nothing is expected of it)");
        }
        lock (_gate)
            OversizedRows.Add(new OversizedFault(index, row.Id, shownType, payload.Length, committed, row.Txn, movedPast));
        return string.Create(CultureInfo.InvariantCulture,
            $"{detail}: {(committed ? $"committed in txn {row.Txn}, slot past it after {movedPast?.ToString("F1", CultureInfo.InvariantCulture) ?? "NEVER"} s" : "not committed")}");
    }

    /// <summary>Incompressible content: jsonb <c>{"blob":"&lt;base64&gt;"}</c> of about <paramref name="size"/> bytes, or that many random bytes.</summary>
    static byte[] OversizedPayload(int size, Random random, bool bytea)
    {
        if (bytea)
        {
            var bytes = new byte[size];
            random.NextBytes(bytes);
            return bytes;
        }
        var raw = new byte[size * 3 / 4];
        random.NextBytes(raw);
        return System.Text.Encoding.UTF8.GetBytes($$"""{"blob":"{{Convert.ToBase64String(raw)}}"}""");
    }

    /// <summary>
    /// With a partitioned outbox: detaches the oldest attached partition whose time range is over, once no transaction
    /// that could still write into it runs and the slot has passed everything written so far (so it holds no unrelayed
    /// rows; its rows stay counted as the outbox's), then attaches a new empty partition for a range starting 15–30 s
    /// from now, into which the writers' rows then go (created_at defaults to the transaction's start).
    /// </summary>
    async Task<string> PartitionCycleAsync(int index, Func<string, string> start)
    {
        var notes = new List<string>();
        start("detach a relayed partition whose range is over (if any), attach a new one");
        await using var connection = new NpgsqlConnection(postgres.ConnectionString);
        await connection.OpenAsync();
        var now = await ScalarAsync<DateTime>(connection, "SELECT now()");

        var candidate = _attached.FirstOrDefault(p => p.To < now.AddSeconds(-10));
        if (candidate.Name is not null)
        {
            var range = $"{Sql(candidate.From)} .. {Sql(candidate.To)}";
            var quiet = false;
            for (var i = 0; i < 60 && !quiet; i++)
            {
                await using var running = new NpgsqlCommand(
                    "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND xact_start < $1", connection);
                running.Parameters.AddWithValue(candidate.To);
                quiet = (long)(await running.ExecuteScalarAsync())! == 0;
                if (!quiet)
                    await Task.Delay(500);
            }
            var passed = quiet ? await WaitSlotPastNowAsync(TimeSpan.FromSeconds(90)) : null;
            if (!quiet)
                notes.Add($"{candidate.Name} not detached: transactions older than its range's end still run");
            else if (passed is null)
                notes.Add($"{candidate.Name} not detached: the slot has not passed every row written so far within 90 s");
            else
            {
                try
                {
                    await ExecAsync(connection, "SET lock_timeout = '10s'");
                    await ExecAsync(connection, $"ALTER TABLE public.outbox DETACH PARTITION public.{candidate.Name}");
                    var rows = await ScalarAsync<long>(connection, $"SELECT count(*) FROM public.{candidate.Name}");
                    _attached.Remove(candidate);
                    lock (_gate)
                    {
                        DetachedTables.Add(candidate.Name);
                        Partitions.Add(new PartitionChange(index, "detach", candidate.Name, range, rows, Math.Round(log.Elapsed, 1)));
                    }
                    notes.Add(string.Create(CultureInfo.InvariantCulture, $"detached {candidate.Name} [{range}) holding {rows} rows, all relayed (slot past them after {passed:F1} s)"));
                }
                catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.LockNotAvailable)
                {
                    notes.Add($"{candidate.Name} not detached: {e.MessageText}");
                }
                finally
                {
                    await ExecAsync(connection, "RESET lock_timeout");
                }
            }
        }

        now = await ScalarAsync<DateTime>(connection, "SELECT now()");
        var from = now.AddSeconds(15 + 15 * _random.NextDouble());
        if (_attached.Count > 0 && _attached[^1].To > from)
            from = _attached[^1].To;
        var to = from.AddSeconds(20 + 40 * _random.NextDouble());
        var name = $"outbox_p{++_partitions}";
        try
        {
            await ExecAsync(connection, $"CREATE TABLE public.{name} (LIKE public.outbox INCLUDING DEFAULTS INCLUDING CONSTRAINTS)");
            await ExecAsync(connection, "SET lock_timeout = '10s'");
            await ExecAsync(connection, $"ALTER TABLE public.outbox ATTACH PARTITION public.{name} FOR VALUES FROM ('{Sql(from)}') TO ('{Sql(to)}')");
            _attached.Add((name, from, to));
            lock (_gate)
                Partitions.Add(new PartitionChange(index, "attach", name, $"{Sql(from)} .. {Sql(to)}", null, Math.Round(log.Elapsed, 1)));
            notes.Add(string.Create(CultureInfo.InvariantCulture,
                $"attached {name} for [{Sql(from)}, {Sql(to)}), {(from - now).TotalSeconds:F0} s from now"));
        }
        catch (PostgresException e)
        {
            notes.Add($"{name} not attached: {e.SqlState} {e.MessageText}");
            await ExecAsync(connection, $"DROP TABLE IF EXISTS public.{name}");
        }
        finally
        {
            await ExecAsync(connection, "RESET lock_timeout");
        }
        var detail = string.Join("; ", notes);
        log.Info($"fault #{index}: {detail}");
        return detail;
    }

    static string Sql(DateTime utc) => utc.ToString("yyyy-MM-dd HH:mm:ss.ffffff", CultureInfo.InvariantCulture) + "+00";

    static async Task<T> ScalarAsync<T>(NpgsqlConnection connection, string sql)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        return (T)(await command.ExecuteScalarAsync())!;
    }

    static async Task ExecAsync(NpgsqlConnection connection, string sql)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync();
    }

    async Task RestartPostgresAsync(string mode)
    {
        monitor.PostgresRestartBegins();
        try
        {
            await postgres.StopAsync(mode);
        }
        finally
        {
            // Whatever happened, the server must run again before the next fault.
            for (var attempt = 1; ; attempt++)
            {
                try
                {
                    await postgres.StartAgainAsync();
                    break;
                }
                catch (InvalidOperationException e) when (attempt < 5)
                {
                    log.Info($"PostgreSQL did not start (attempt {attempt}): {e.Message.Split('\n')[0]}; retrying");
                    await Task.Delay(2000);
                }
            }
            NpgsqlConnection.ClearAllPools(); // pooled connections point at the old server process
            log.Info("PostgreSQL is up again");
        }
    }
}
