//! A librdkafka producer that produces through topic handles.
//!
//! rdkafka's `BaseProducer::send` names each message's topic: the name is copied into a C
//! string, and librdkafka looks the topic up by name under the client's write lock, a lock its
//! broker threads take too. A [`TopicProducer`] makes a handle of each of its topics once and
//! produces through it (librdkafka's `rd_kafka_produceva` with `RD_KAFKA_VTYPE_RKT`), giving
//! the headers one by one for librdkafka to gather: a message costs librdkafka's copy of it
//! and its headers, and takes no lock of the client's.

use std::ffi::{CStr, CString, c_int, c_void};
use std::ptr::NonNull;

use rdkafka::IntoOpaque;
use rdkafka::bindings as rdsys;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{BaseProducer, Producer, ProducerContext};
use rdsys::rd_kafka_vtype_t as VType;

/// The most headers a message may have.
pub const MAX_HEADERS: usize = 8;

/// One message to produce.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// The topic's index among the producer's topics.
    pub topic: usize,
    pub key: &'a [u8],
    /// `None`: a tombstone.
    pub payload: Option<&'a [u8]>,
    /// Milliseconds since the epoch; `None`: the time it is produced.
    pub timestamp: Option<i64>,
    /// Names and values, at most [`MAX_HEADERS`].
    pub headers: &'a [(&'static CStr, &'a [u8])],
}

/// A topic librdkafka would not make a handle of.
#[derive(Debug, thiserror::Error)]
#[error("cannot use Kafka topic `{topic}`: {code}")]
pub struct TopicError {
    pub topic: String,
    pub code: RDKafkaErrorCode,
}

/// A producer and a handle of each topic it produces to.
pub struct TopicProducer<C: ProducerContext> {
    /// Released before the producer, in [`Drop`]: a handle must not outlive its client.
    topics: Vec<NonNull<rdsys::rd_kafka_topic_t>>,
    producer: BaseProducer<C>,
}

// SAFETY: librdkafka's topic handles may be used from any thread (the producer's own
// thread-safety is `BaseProducer`'s, required of `C` by these bounds).
unsafe impl<C: ProducerContext> Send for TopicProducer<C> where BaseProducer<C>: Send {}
// SAFETY: as for `Send`.
unsafe impl<C: ProducerContext> Sync for TopicProducer<C> where BaseProducer<C>: Sync {}

impl<C: ProducerContext> TopicProducer<C> {
    /// Makes a handle of each of `topics`, in order: a [`Record`]'s `topic` indexes them.
    pub fn new<S: AsRef<str>>(
        producer: BaseProducer<C>,
        topics: impl IntoIterator<Item = S>,
    ) -> Result<Self, TopicError> {
        let mut this = Self {
            topics: Vec::new(),
            producer,
        };
        for topic in topics {
            let topic = topic.as_ref();
            let error = |code| TopicError {
                topic: topic.to_owned(),
                code,
            };
            let name = CString::new(topic).map_err(|_| error(RDKafkaErrorCode::InvalidArgument))?;
            // SAFETY: a live client and a C string librdkafka copies; the handle is released
            // before the client (`Drop`).
            let handle = unsafe {
                rdsys::rd_kafka_topic_new(
                    this.producer.client().native_ptr(),
                    name.as_ptr(),
                    std::ptr::null_mut(),
                )
            };
            match NonNull::new(handle) {
                Some(handle) => this.topics.push(handle),
                // SAFETY: reads the calling thread's last librdkafka error.
                None => return Err(error(unsafe { rdsys::rd_kafka_last_error() }.into())),
            }
        }
        Ok(this)
    }

    /// The producer, to poll, flush and ask about.
    pub fn base(&self) -> &BaseProducer<C> {
        &self.producer
    }

    /// Hands `record` to librdkafka, which copies it; `opaque` comes back with its delivery
    /// report. A refusal (a full queue among them) gives `opaque` back with the reason.
    pub fn send(
        &self,
        record: &Record<'_>,
        opaque: C::DeliveryOpaque,
    ) -> Result<(), (RDKafkaErrorCode, C::DeliveryOpaque)> {
        let Some(&topic) = self.topics.get(record.topic) else {
            return Err((RDKafkaErrorCode::UnknownTopic, opaque));
        };
        if record.headers.len() > MAX_HEADERS {
            return Err((RDKafkaErrorCode::InvalidArgument, opaque));
        }
        let opaque = opaque.into_ptr();
        let mem = |bytes: &[u8]| rdsys::rd_kafka_vu_s__bindgen_ty_1 {
            mem: rdsys::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_1 {
                ptr: bytes.as_ptr().cast_mut().cast::<c_void>(),
                size: bytes.len(),
            },
        };
        let entry = |vtype, u| rdsys::rd_kafka_vu_t { vtype, u };
        let mut entries = [entry(
            VType::RD_KAFKA_VTYPE_END,
            rdsys::rd_kafka_vu_s__bindgen_ty_1 { i: 0 },
        ); 6 + MAX_HEADERS];
        entries[0] = entry(
            VType::RD_KAFKA_VTYPE_RKT,
            rdsys::rd_kafka_vu_s__bindgen_ty_1 {
                rkt: topic.as_ptr(),
            },
        );
        entries[1] = entry(
            VType::RD_KAFKA_VTYPE_MSGFLAGS,
            rdsys::rd_kafka_vu_s__bindgen_ty_1 {
                i: rdsys::RD_KAFKA_MSG_F_COPY as c_int,
            },
        );
        entries[2] = entry(VType::RD_KAFKA_VTYPE_KEY, mem(record.key));
        entries[3] = entry(
            VType::RD_KAFKA_VTYPE_OPAQUE,
            rdsys::rd_kafka_vu_s__bindgen_ty_1 { ptr: opaque },
        );
        entries[4] = entry(
            VType::RD_KAFKA_VTYPE_TIMESTAMP,
            rdsys::rd_kafka_vu_s__bindgen_ty_1 {
                i64_: record.timestamp.unwrap_or(0),
            },
        );
        let mut count = 5;
        if let Some(payload) = record.payload {
            entries[count] = entry(VType::RD_KAFKA_VTYPE_VALUE, mem(payload));
            count += 1;
        }
        for (name, value) in record.headers {
            entries[count] = entry(
                VType::RD_KAFKA_VTYPE_HEADER,
                rdsys::rd_kafka_vu_s__bindgen_ty_1 {
                    header: rdsys::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_2 {
                        name: name.as_ptr(),
                        val: value.as_ptr().cast::<c_void>(),
                        size: value.len() as isize,
                    },
                },
            );
            count += 1;
        }
        // SAFETY: a live client; the topic handle is this client's and alive; every pointer
        // is valid for the call, and librdkafka copies what it keeps (`RD_KAFKA_MSG_F_COPY`,
        // the headers); the error it may return is ours to release.
        unsafe {
            let error = rdsys::rd_kafka_produceva(
                self.producer.client().native_ptr(),
                entries.as_ptr(),
                count,
            );
            if error.is_null() {
                return Ok(());
            }
            let code = rdsys::rd_kafka_error_code(error);
            rdsys::rd_kafka_error_destroy(error);
            Err((code.into(), C::DeliveryOpaque::from_ptr(opaque)))
        }
    }
}

impl<C: ProducerContext> Drop for TopicProducer<C> {
    fn drop(&mut self) {
        for topic in self.topics.drain(..) {
            // SAFETY: a handle made by `rd_kafka_topic_new` on this producer's client, which
            // is still alive (fields are dropped after this), released once.
            unsafe { rdsys::rd_kafka_topic_destroy(topic.as_ptr()) };
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{DeliveryResult, Headers, Message};
    use rdkafka::mocking::MockCluster;
    use rdkafka::{ClientConfig, ClientContext, Timestamp, TopicPartitionList};

    use super::*;

    /// Gathers the opaques of the messages delivered (a message purged when the producer is
    /// dropped is not).
    #[derive(Default)]
    struct Delivered(Mutex<Vec<usize>>);

    impl ClientContext for Delivered {}

    impl ProducerContext for Delivered {
        type DeliveryOpaque = usize;

        fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
            if result.is_ok() {
                self.0.lock().unwrap().push(opaque);
            }
        }
    }

    fn producer(bootstrap: &str, queue: &str) -> TopicProducer<Delivered> {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("queue.buffering.max.messages", queue)
            .create_with_context(Delivered::default())
            .unwrap();
        TopicProducer::new(producer, ["first", "second"]).unwrap()
    }

    /// The first message of partition 0 of `topic`.
    fn first_message(bootstrap: &str, topic: &str) -> rdkafka::message::OwnedMessage {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", "check")
            .create()
            .unwrap();
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(topic, 0, rdkafka::Offset::Beginning)
            .unwrap();
        consumer.assign(&assignment).unwrap();
        match consumer.poll(Duration::from_secs(10)) {
            Some(message) => message.unwrap().detach(),
            None => panic!("no message came on `{topic}`"),
        }
    }

    #[test]
    fn a_record_arrives_as_given_and_its_opaque_comes_back_with_the_report() {
        let cluster = MockCluster::new(1).unwrap();
        for topic in ["first", "second"] {
            cluster.create_topic(topic, 1, 1).unwrap();
        }
        let producer = producer(&cluster.bootstrap_servers(), "1000");
        let headers: [(&CStr, &[u8]); 2] = [(c"kind", b"order"), (c"empty", b"")];
        let record = Record {
            topic: 1,
            key: b"42",
            payload: Some(b"value"),
            timestamp: Some(1_767_225_600_000),
            headers: &headers,
        };
        producer.send(&record, 7).unwrap();
        let tombstone = Record {
            topic: 0,
            key: b"43",
            payload: None,
            timestamp: None,
            headers: &[],
        };
        producer.send(&tombstone, 8).unwrap();
        producer.base().flush(Duration::from_secs(10)).unwrap();
        let mut delivered = producer.base().context().0.lock().unwrap().clone();
        delivered.sort_unstable();
        assert_eq!(delivered, [7, 8]);

        let message = first_message(&cluster.bootstrap_servers(), "second");
        assert_eq!(message.key(), Some(&b"42"[..]));
        assert_eq!(message.payload(), Some(&b"value"[..]));
        assert_eq!(
            message.timestamp(),
            Timestamp::CreateTime(1_767_225_600_000)
        );
        let headers = message.headers().unwrap();
        let headers: Vec<(&str, Option<&[u8]>)> =
            headers.iter().map(|h| (h.key, h.value)).collect();
        assert_eq!(
            headers,
            [("kind", Some(&b"order"[..])), ("empty", Some(&b""[..]))]
        );
        let message = first_message(&cluster.bootstrap_servers(), "first");
        assert_eq!(message.key(), Some(&b"43"[..]));
        assert_eq!(message.payload(), None);
        assert!(message.headers().is_none());
        assert!(matches!(message.timestamp(), Timestamp::CreateTime(t) if t > 0));
    }

    #[test]
    fn a_record_not_taken_gives_its_opaque_back_with_the_reason() {
        let cluster = MockCluster::new(1).unwrap();
        let producer = producer(&cluster.bootstrap_servers(), "1");
        let record = |topic, headers| Record {
            topic,
            key: b"1",
            payload: Some(b"v"),
            timestamp: None,
            headers,
        };
        assert_eq!(
            producer.send(&record(2, &[]), 1).unwrap_err(),
            (RDKafkaErrorCode::UnknownTopic, 1)
        );
        let many = [(c"h", &b"v"[..]); MAX_HEADERS + 1];
        assert_eq!(
            producer.send(&record(0, &many), 2).unwrap_err(),
            (RDKafkaErrorCode::InvalidArgument, 2)
        );
        producer.send(&record(0, &many[1..]), 3).unwrap();
        // A queue of one message, not yet reported: the next does not fit.
        assert_eq!(
            producer.send(&record(1, &[]), 4).unwrap_err(),
            (RDKafkaErrorCode::QueueFull, 4)
        );
    }

    #[test]
    fn a_producer_with_a_topic_librdkafka_refuses_is_not_made() {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:9")
            .create_with_context(Delivered::default())
            .unwrap();
        let error = TopicProducer::new(producer, ["fine", "with\0nul"])
            .err()
            .expect("refused");
        assert_eq!(error.topic, "with\0nul");
        assert_eq!(error.code, RDKafkaErrorCode::InvalidArgument);
    }
}
