namespace Cdc.Tests.Fixtures;

/// <summary>
/// A test that needs Apache Kafka (what the Kafka-protocol mock cannot show): it runs when the test servers are a real
/// cluster (<c>CDC_TEST_KAFKA</c>, or Testcontainers where a Docker engine answers) and is reported as skipped, with
/// the reason, otherwise.
/// </summary>
public sealed class ApacheKafkaFactAttribute : FactAttribute
{
    /// <param name="mockLacks">What the mock does differently, for the skip reason.</param>
    public ApacheKafkaFactAttribute(string mockLacks)
    {
        if (Environment.GetEnvironmentVariable("CDC_TEST_KAFKA") is null && !TestServers.DockerAnswers())
            Skip = $"needs Apache Kafka (CDC_TEST_KAFKA, or Testcontainers with a Docker engine): the Kafka-protocol mock here {mockLacks}";
    }
}
