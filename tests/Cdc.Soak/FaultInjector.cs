using System.Globalization;
using Cdc.Embedded;
using Confluent.Kafka;
using Npgsql;

namespace Cdc.Soak;

/// <summary>One injected fault, as logged and reported.</summary>
sealed record FaultRecord(int Index, string Kind, double At, double Seconds, string Detail);

/// <summary>
/// Every 10–40 s (seeded), one fault, run to its end and undone before the next: faults never overlap. Kinds come from a
/// shuffled bag of all kinds, refilled when empty, so a run of n×8 faults has every kind n times.
/// </summary>
sealed class FaultInjector(
    SoakOptions options, RunLog log, WorkerSupervisor worker, MockKafkaCluster kafka, EmbeddedPostgres postgres, SlotMonitor monitor)
{
    public static readonly string[] Kinds =
    [
        "worker_sigkill", "worker_sigterm", "kafka_all_down", "kafka_broker_down",
        "kafka_produce_errors", "kafka_rtt", "postgres_restart_fast", "postgres_crash",
    ];

    static readonly ErrorCode[] RetriableProduceErrors =
        [ErrorCode.NotEnoughReplicas, ErrorCode.NotLeaderForPartition, ErrorCode.RequestTimedOut];

    readonly Random _random = new(options.Seed);
    readonly Queue<string> _bag = new();
    readonly Lock _gate = new();

    public List<FaultRecord> Faults { get; } = [];

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
            foreach (var kind in Kinds.OrderBy(_ => _random.Next()))
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
            default:
                throw new InvalidOperationException(kind);
        }
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
