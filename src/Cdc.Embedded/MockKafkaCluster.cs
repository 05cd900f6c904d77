using Cdc.Contracts;
using Confluent.Kafka;

namespace Cdc.Embedded;

/// <summary>
/// librdkafka's built-in mock cluster: a Kafka-protocol test broker (not Apache Kafka) listening on
/// real loopback TCP ports inside this process, so any Kafka client can connect to
/// <see cref="BootstrapServers"/>. It supports produce (idempotent and transactional), fetch,
/// consumer groups and offset commits, and auto-creates topics on produce/metadata; it does not
/// support the CreateTopics admin API, hence <see cref="CreateTopic"/>.
/// </summary>
/// <remarks>All members may be called from any thread.</remarks>
public sealed class MockKafkaCluster : IDisposable
{
    /// <summary>Kafka protocol API key of Produce requests, for <see cref="PushRequestErrors"/>.</summary>
    public const short ProduceApiKey = 0;

    // Calls hold this lock so Dispose cannot free the cluster while a call is using it.
    private readonly Lock _gate = new();
    private nint _rk;
    private nint _mcluster;

    private MockKafkaCluster(nint rk, nint mcluster, int brokers)
    {
        _rk = rk;
        _mcluster = mcluster;
        BrokerCount = brokers;
        BootstrapServers = LibRdKafka.MockClusterBootstraps(mcluster);
    }

    /// <summary>Comma-separated "127.0.0.1:port" list of the mock brokers.</summary>
    public string BootstrapServers { get; }

    /// <summary>Number of brokers; their ids are 1..BrokerCount.</summary>
    public int BrokerCount { get; }

    /// <summary>Starts a mock cluster with <paramref name="brokers"/> brokers (ids 1..N).</summary>
    public static MockKafkaCluster Start(int brokers = 3)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(brokers, 1);
        LibRdKafka.EnsureLoaded();

        // The mock cluster lives inside a librdkafka handle; an unconfigured producer is enough.
        // log_level 0 keeps it from printing "no bootstrap.servers" and similar noise to stderr.
        var rk = LibRdKafka.NewProducerHandle([new("log_level", "0")]);
        var mcluster = LibRdKafka.MockClusterNew(rk, brokers);
        if (mcluster == 0)
        {
            LibRdKafka.Destroy(rk);
            throw new InvalidOperationException($"rd_kafka_mock_cluster_new({brokers}) returned NULL.");
        }
        return new MockKafkaCluster(rk, mcluster, brokers);
    }

    /// <summary>
    /// Creates a topic. Topics are also auto-created on first produce/metadata request, with the
    /// mock cluster's defaults, so call this first when the partition count matters.
    /// </summary>
    public void CreateTopic(string topic, int partitions = 3, int replicationFactor = 3)
    {
        // The mock creates any name; a real cluster would refuse what Kafka's rule does not allow.
        if (!TopicName.IsValid(topic))
            throw new ArgumentException($"'{topic}' is not a valid Kafka topic name", nameof(topic));
        // librdkafka aborts the whole process on a negative count, and accepts nonsense like 0.
        ArgumentOutOfRangeException.ThrowIfLessThan(partitions, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(replicationFactor, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(replicationFactor, BrokerCount);
        Check(mc => LibRdKafka.MockTopicCreate(mc, topic, partitions, replicationFactor), $"create topic '{topic}'");
    }

    /// <summary>Disconnects the broker and refuses new connections. Does not move partition leadership.</summary>
    public void SetBrokerDown(int brokerId) =>
        Check(mc => LibRdKafka.MockBrokerSetDown(mc, ValidId(brokerId)), $"set broker {brokerId} down");

    /// <summary>Makes the broker accept connections again.</summary>
    public void SetBrokerUp(int brokerId) =>
        Check(mc => LibRdKafka.MockBrokerSetUp(mc, ValidId(brokerId)), $"set broker {brokerId} up");

    /// <summary>Sets every broker down: clients see a cluster that is entirely unreachable.</summary>
    // One call per broker id rather than librdkafka's "-1 = all brokers", which older builds lack.
    public void SetAllBrokersDown()
    {
        for (var id = 1; id <= BrokerCount; id++) SetBrokerDown(id);
    }

    /// <summary>Sets every broker up again.</summary>
    public void SetAllBrokersUp()
    {
        for (var id = 1; id <= BrokerCount; id++) SetBrokerUp(id);
    }

    /// <summary>Delays every response of the broker by <paramref name="rttMs"/> milliseconds.</summary>
    public void SetBrokerRtt(int brokerId, int rttMs)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(rttMs);
        Check(mc => LibRdKafka.MockBrokerSetRtt(mc, ValidId(brokerId), rttMs), $"set broker {brokerId} rtt");
    }

    /// <summary>
    /// The next <c>errors.Length</c> requests with <paramref name="apiKey"/> (on any broker) fail with
    /// these errors, in order. <see cref="ErrorCode.Local_Transport"/> makes the broker disconnect.
    /// </summary>
    public void PushRequestErrors(short apiKey, params ErrorCode[] errors)
    {
        ArgumentNullException.ThrowIfNull(errors);
        if (errors.Length == 0) return;
        lock (_gate)
            LibRdKafka.MockPushRequestErrors(Cluster(), apiKey, errors);
    }

    /// <summary>Closes the listeners and frees the cluster. Idempotent.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            if (_mcluster == 0) return;
            LibRdKafka.MockClusterDestroy(_mcluster); // before its owning handle
            LibRdKafka.Destroy(_rk);
            _mcluster = 0;
            _rk = 0;
        }
    }

    private int ValidId(int brokerId)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(brokerId, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(brokerId, BrokerCount);
        return brokerId;
    }

    private nint Cluster()
    {
        ObjectDisposedException.ThrowIf(_mcluster == 0, this);
        return _mcluster;
    }

    private void Check(Func<nint, ErrorCode> call, string what)
    {
        ErrorCode err;
        lock (_gate)
            err = call(Cluster());
        if (err != ErrorCode.NoError)
            throw new InvalidOperationException($"Mock Kafka cluster: could not {what}: {LibRdKafka.Err2Str(err)} ({err})");
    }
}
