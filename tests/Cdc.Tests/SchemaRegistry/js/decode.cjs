// Decodes record values with Confluent's own JavaScript ProtobufDeserializer (@confluentinc/schemaregistry), which finds
// the writer's schema in the registry by the id in each value's prefix and builds the message type from it: nothing of
// this project's code or generated types is used. Input on stdin: {"registryUrl": "...", "records": [{"topic": "...",
// "value": "<base64>"}]}; output: a JSON array with, per record, the message's type name and fields.
// Run by tests/Cdc.Tests/SchemaRegistry/ConfluentJavaScriptDeserializerTests.cs with NODE_PATH set to what
// .ci/install-confluent-serdes installed.
const { SchemaRegistryClient, ProtobufDeserializer, SerdeType } = require('@confluentinc/schemaregistry');

async function main() {
  const input = JSON.parse(require('fs').readFileSync(0, 'utf8'));
  const client = new SchemaRegistryClient({ baseURLs: [input.registryUrl] });
  const deserializer = new ProtobufDeserializer(client, SerdeType.VALUE, {});
  const results = [];
  for (const record of input.records) {
    const msg = await deserializer.deserialize(record.topic, Buffer.from(record.value, 'base64'));
    results.push({
      typeName: msg.$typeName,
      id: msg.id,
      aggregateType: msg.aggregateType,
      aggregateId: msg.aggregateId,
      eventType: msg.eventType,
      payload: Buffer.from(msg.payload).toString('base64'),
      payloadContentType: msg.payloadContentType,
      headers: msg.headers,
      createdAtSeconds: msg.createdAt ? msg.createdAt.seconds.toString() : null,
      commitLsn: msg.source ? msg.source.commitLsn.toString() : null,
    });
  }
  process.stdout.write(JSON.stringify(results));
}

main().catch(e => {
  process.stderr.write(String(e && e.stack || e));
  process.exit(1);
});
