using Cdc.Embedded;

namespace Cdc.Benchmarks;

/// <summary>
/// <c>--broker [--brokers N]</c>: librdkafka's mock cluster (a Kafka-protocol test broker, not Apache Kafka) in a
/// process of its own, so its CPU is not counted as the connector's or the baselines'. Prints
/// <c>BOOTSTRAP host:port,...</c>, then obeys stdin lines until stdin closes:
/// <c>topic NAME PARTITIONS REPLICATION</c>, <c>down</c> (every broker), <c>up</c>; each answered by <c>ok</c> or <c>error ...</c>.
/// </summary>
static class BrokerMode
{
    public static int Run(string[] args)
    {
        var brokers = 3;
        for (var i = 0; i < args.Length - 1; i++)
            if (args[i] == "--brokers")
                brokers = int.Parse(args[i + 1]);

        using var cluster = MockKafkaCluster.Start(brokers);
        Console.WriteLine($"BOOTSTRAP {cluster.BootstrapServers}");
        while (Console.ReadLine() is { } line)
        {
            var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            try
            {
                switch (parts)
                {
                    case ["topic", var name, var partitions, var rf]:
                        cluster.CreateTopic(name, int.Parse(partitions), int.Parse(rf));
                        break;
                    case ["down"]:
                        cluster.SetAllBrokersDown();
                        break;
                    case ["up"]:
                        cluster.SetAllBrokersUp();
                        break;
                    case []:
                        continue;
                    default:
                        Console.WriteLine($"error unknown command '{line}'");
                        continue;
                }
                Console.WriteLine("ok");
            }
            catch (Exception e)
            {
                Console.WriteLine($"error {e.Message}");
            }
        }
        return 0;
    }
}

/// <summary>The parent's handle on the <c>--broker</c> child.</summary>
sealed class Broker : IDisposable
{
    readonly Child _child;
    Broker(Child child, string bootstrap)
    {
        _child = child;
        BootstrapServers = bootstrap;
    }

    public string BootstrapServers { get; }
    public int Pid => _child.Pid;

    public static async Task<Broker> StartAsync(int brokers)
    {
        var child = Child.StartSelf("broker", ["--broker", "--brokers", brokers.ToString()]);
        var line = await child.WaitForLineAsync("BOOTSTRAP ", TimeSpan.FromSeconds(60));
        return new Broker(child, line["BOOTSTRAP ".Length..].Trim());
    }

    public async Task CommandAsync(string command)
    {
        _child.WriteLine(command);
        var reply = await _child.WaitForLineAsync("", TimeSpan.FromSeconds(30));
        if (reply != "ok")
            throw new InvalidOperationException($"broker: '{command}' answered '{reply}'");
    }

    public void Dispose() => _child.Dispose();
}
