//! The OpenAPI document states every rule the server enforces. For every route of the document
//! a gateway serves (`GET /v1/openapi.json`), requests are generated from the document itself,
//! valid ones and ones with one defect (a parameter or a body field out of its schema, a
//! required one missing, an unknown field), and each is judged by the document: one it says is
//! valid must be accepted (answered with anything but 400), one it says is invalid must be
//! refused with 400 `invalid_request`; and no request may ever get a 5xx. Against a real cluster
//! of one voter and one gateway.
//!
//! The document's schemas use a small part of JSON Schema (type, enum, pattern, minLength,
//! maxLength, minimum, maximum, minItems, maxItems, format int64, nullable, required,
//! additionalProperties, $ref) and two extensions, `x-utf8-bytes-max` and `x-unique-by` (no
//! two items of an array with the same value of that property: a cart's lines, one per
//! product); [`Schema::accepts`] judges exactly those.

mod common;

use std::time::Duration;

use proptest::prelude::*;
use proptest::strategy::{BoxedStrategy, Union};
use proptest::test_runner::{Config as RunnerConfig, TestCaseError, TestRunner};
use regex::Regex;
use serde_json::{json, Map, Value};

use common::ELECTION_WAIT;
use flashstock_client::shop::segment as encode;
use flashstock_deploy::local::{Layout, LocalCluster};

/// Generated requests per route (valid and invalid together): about 11 x 40 requests in all.
const CASES_PER_ROUTE: u32 = 40;
/// A product the cluster holds, so that generated ids sometimes name a real one.
const KNOWN_PRODUCT: &str = "tee";
/// The state machine's stock bound: a restock past it is a committed refusal (400).
const STOCK_MAX: u64 = flashstock_api::STOCK_MAX;

#[test]
fn requests_valid_by_the_document_are_accepted_and_invalid_ones_refused() {
    let runtime = tokio::runtime::Runtime::new().expect("a Tokio runtime");
    let cluster = runtime.block_on(one_voter_one_gateway());
    let gateway = cluster.public_url(cluster.gateway_ids()[0]);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client");
    let doc: Value = runtime.block_on(async {
        let served = http.get(format!("{gateway}/v1/openapi.json")).send().await;
        served.expect("the document").json().await.expect("JSON")
    });
    let probe = Probe {
        http,
        gateway,
        admin_token: cluster.admin_token.clone(),
    };
    let operations = operations(&doc);
    assert_eq!(operations.len(), 22, "every route of the document");
    for operation in &operations {
        let strategy = prop_oneof![
            operation.valid_request(&doc),
            operation.invalid_request(&doc)
        ];
        let mut runner = TestRunner::new(RunnerConfig {
            cases: CASES_PER_ROUTE,
            failure_persistence: None,
            ..RunnerConfig::default()
        });
        let outcome = runner.run(&strategy, |request| {
            let valid = operation.accepts(&request, &doc);
            runtime.block_on(probe.check(operation, &request, valid))
        });
        if let Err(failure) = outcome {
            panic!("{} {}: {failure}", operation.method, operation.path);
        }
    }
}

async fn one_voter_one_gateway() -> LocalCluster {
    let layout = Layout {
        voters: 1,
        gateways: 1,
    };
    let binary = common::node_binary();
    let mut cluster = LocalCluster::temporary(binary, layout, |_| {}).expect("lay out");
    cluster
        .start_and_form(ELECTION_WAIT)
        .await
        .expect("start and form the cluster");
    // Checkout's routes answer 503 until the gateway's replica runs cluster version 2.
    common::wait_cluster_version(&cluster, 2, ELECTION_WAIT).await;
    cluster
        .shop_client()
        .create_product(&flashstock_api::CreateProductRequest {
            id: KNOWN_PRODUCT.into(),
            name: "Logo T-shirt".into(),
            price_cents: 2500,
            stock: 1_000_000,
            limit_per_customer: None,
        })
        .await
        .expect("create the known product");
    cluster
}

// ---- the document ----

/// Where a value of a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Path,
    Query,
    Header,
    Body,
}

/// One parameter, or the body.
#[derive(Debug, Clone)]
struct Slot {
    place: Place,
    name: String,
    required: bool,
    schema: Value,
}

/// One operation of the document.
struct Operation {
    method: String,
    path: String,
    slots: Vec<Slot>,
    bearer: bool,
}

/// A generated request: one value per slot, `None` when left out.
type Request = Vec<Option<Value>>;

fn operations(doc: &Value) -> Vec<Operation> {
    let mut all = Vec::new();
    for (path, methods) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in methods.as_object().expect("operations") {
            let mut slots: Vec<Slot> = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|parameter| Slot {
                    place: match parameter["in"].as_str() {
                        Some("path") => Place::Path,
                        Some("query") => Place::Query,
                        Some("header") => Place::Header,
                        other => panic!("parameter in {other:?}"),
                    },
                    name: parameter["name"].as_str().expect("a name").to_owned(),
                    required: parameter["required"].as_bool().unwrap_or(false),
                    schema: parameter["schema"].clone(),
                })
                .collect();
            let body = &operation["requestBody"];
            if let Some(schema) = body["content"]["application/json"].get("schema") {
                slots.push(Slot {
                    place: Place::Body,
                    name: "body".into(),
                    required: body["required"].as_bool().unwrap_or(false),
                    schema: schema.clone(),
                });
            }
            all.push(Operation {
                method: method.to_uppercase(),
                path: path.clone(),
                slots,
                bearer: operation.get("security").is_some(),
            });
        }
    }
    all
}

/// A `$ref` followed to its schema.
fn resolve<'a>(schema: &'a Value, doc: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(reference) => {
            let name = reference.trim_start_matches("#/components/schemas/");
            resolve(&doc["components"]["schemas"][name], doc)
        }
        None => schema,
    }
}

/// A schema, and what it says of a value.
struct Schema<'a> {
    schema: &'a Value,
    doc: &'a Value,
}

impl<'a> Schema<'a> {
    fn new(schema: &'a Value, doc: &'a Value) -> Schema<'a> {
        Schema {
            schema: resolve(schema, doc),
            doc,
        }
    }

    fn get(&self, keyword: &str) -> Option<&'a Value> {
        self.schema.get(keyword)
    }

    fn kind(&self) -> &'a str {
        if self.get("oneOf").is_some() {
            return "oneOf";
        }
        self.get("type").and_then(Value::as_str).unwrap_or("any")
    }

    /// The alternatives of a `oneOf`.
    fn alternatives(&self) -> Vec<Value> {
        self.get("oneOf")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    }

    fn bound(&self, keyword: &str) -> Option<i128> {
        self.get(keyword)
            .and_then(Value::as_i64)
            .map(i128::from)
            .or_else(|| self.get(keyword).and_then(Value::as_u64).map(i128::from))
    }

    /// The document's verdict on `value`.
    fn accepts(&self, value: &Value) -> bool {
        if value.is_null() {
            return self.get("nullable") == Some(&Value::Bool(true));
        }
        if let Some(allowed) = self.get("enum").and_then(Value::as_array) {
            return allowed.contains(value);
        }
        match self.kind() {
            "string" => value.as_str().is_some_and(|text| self.accepts_text(text)),
            "integer" => self.accepts_integer(value),
            "boolean" => value.is_boolean(),
            "object" => value
                .as_object()
                .is_some_and(|object| self.accepts_object(object)),
            "array" => value.as_array().is_some_and(|items| {
                let count = items.len() as i128;
                let item = Schema::new(&self.schema["items"], self.doc);
                self.bound("minItems").is_none_or(|min| count >= min)
                    && self.bound("maxItems").is_none_or(|max| count <= max)
                    && items.iter().all(|value| item.accepts(value))
                    && self.unique_by(items)
            }),
            "oneOf" => {
                let alternatives = self.alternatives();
                let accepting = alternatives
                    .iter()
                    .filter(|alternative| Schema::new(alternative, self.doc).accepts(value));
                accepting.count() == 1
            }
            _ => true,
        }
    }

    /// `x-unique-by`: no two items with the same value of the named property.
    fn unique_by(&self, items: &[Value]) -> bool {
        let Some(property) = self.get("x-unique-by").and_then(Value::as_str) else {
            return true;
        };
        let mut seen = std::collections::BTreeSet::new();
        items
            .iter()
            .all(|item| seen.insert(item.get(property).map(Value::to_string)))
    }

    fn accepts_text(&self, text: &str) -> bool {
        let chars = text.chars().count() as i128;
        self.bound("minLength").is_none_or(|min| chars >= min)
            && self.bound("maxLength").is_none_or(|max| chars <= max)
            && self
                .bound("x-utf8-bytes-max")
                .is_none_or(|max| text.len() as i128 <= max)
            && self
                .get("pattern")
                .and_then(Value::as_str)
                .is_none_or(|pattern| {
                    Regex::new(pattern)
                        .expect("the document's patterns compile")
                        .is_match(text)
                })
    }

    fn accepts_integer(&self, value: &Value) -> bool {
        let number = match value {
            Value::Number(n) => n.as_i64().map(i128::from).or(n.as_u64().map(i128::from)),
            _ => None,
        };
        let Some(number) = number else {
            return false;
        };
        let int64 = self.get("format") != Some(&json!("int64"))
            || (i128::from(i64::MIN)..=i128::from(i64::MAX)).contains(&number);
        int64
            && self.bound("minimum").is_none_or(|min| number >= min)
            && self.bound("maximum").is_none_or(|max| number <= max)
    }

    fn accepts_object(&self, object: &Map<String, Value>) -> bool {
        let properties = self.properties();
        let required = self.required();
        let closed = self.get("additionalProperties") == Some(&Value::Bool(false));
        required.iter().all(|name| object.contains_key(name))
            && object
                .iter()
                .all(|(name, value)| match properties.get(name) {
                    Some(schema) => Schema::new(schema, self.doc).accepts(value),
                    None => !closed,
                })
    }

    fn properties(&self) -> Map<String, Value> {
        self.get("properties")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    }

    fn required(&self) -> Vec<String> {
        self.get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|name| name.as_str().map(str::to_owned))
            .collect()
    }
}

// ---- generating requests from the document ----

impl Operation {
    fn accepts(&self, request: &Request, doc: &Value) -> bool {
        self.slots
            .iter()
            .zip(request)
            .all(|(slot, value)| match value {
                None => !slot.required,
                Some(value) => Schema::new(&slot.schema, doc).accepts(value),
            })
    }

    /// Every slot valid; optional ones sometimes left out.
    fn valid_request(&self, doc: &Value) -> BoxedStrategy<Request> {
        let slots: Vec<BoxedStrategy<Option<Value>>> = self
            .slots
            .iter()
            .map(|slot| valid_slot(slot, doc))
            .collect();
        slots.boxed()
    }

    /// Exactly one slot broken (left out though required, or out of its schema); the others
    /// valid. The document judges the result: a defect may happen to be valid after all.
    fn invalid_request(&self, doc: &Value) -> BoxedStrategy<Request> {
        let mut choices = Vec::new();
        for (broken, slot) in self.slots.iter().enumerate() {
            let mut defects = vec![invalid_value(&slot.schema, doc, slot.place)
                .prop_filter("sendable", sendable(slot.place))
                .prop_map(Some)
                .boxed()];
            if slot.required && slot.place != Place::Path {
                defects.push(Just(None).boxed());
            }
            let defect = Union::new(defects).boxed();
            let slots: Vec<BoxedStrategy<Option<Value>>> = self
                .slots
                .iter()
                .enumerate()
                .map(|(i, other)| {
                    if i == broken {
                        defect.clone()
                    } else {
                        valid_slot(other, doc)
                    }
                })
                .collect();
            choices.push(slots.boxed());
        }
        if choices.is_empty() {
            // Nothing to break: every request of this route is valid.
            return self.valid_request(doc);
        }
        Union::new(choices).boxed()
    }
}

fn valid_slot(slot: &Slot, doc: &Value) -> BoxedStrategy<Option<Value>> {
    let value = valid_value(&slot.schema, doc).prop_map(Some);
    if slot.required {
        value.boxed()
    } else {
        prop_oneof![1 => Just(None), 3 => value].boxed()
    }
}

/// Values the schema accepts.
fn valid_value(schema: &Value, doc: &Value) -> BoxedStrategy<Value> {
    let schema = Schema::new(schema, doc);
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        return proptest::sample::select(allowed.clone()).boxed();
    }
    let value = match schema.kind() {
        "string" => valid_text(&schema),
        "integer" => {
            let min = schema.bound("minimum").unwrap_or(i128::from(i64::MIN));
            let max = schema.bound("maximum").unwrap_or(i128::from(i64::MAX));
            let (min, max) = (min as i64, max as i64);
            prop_oneof![Just(min), Just(max), min..=max]
                .prop_map(Value::from)
                .boxed()
        }
        "boolean" => any::<bool>().prop_map(Value::from).boxed(),
        "object" => {
            let properties = schema.properties();
            let required = schema.required();
            let fields: Vec<BoxedStrategy<Option<(String, Value)>>> = properties
                .iter()
                .map(|(name, property)| {
                    let listed = name.clone();
                    let value =
                        valid_value(property, doc).prop_map(move |v| Some((listed.clone(), v)));
                    if required.contains(name) {
                        value.boxed()
                    } else {
                        prop_oneof![Just(None), value].boxed()
                    }
                })
                .collect();
            fields
                .prop_map(|fields| Value::Object(fields.into_iter().flatten().collect()))
                .boxed()
        }
        "array" => {
            // A few items: enough to mix kinds, few enough to keep every case quick.
            let min = schema.bound("minItems").unwrap_or(0) as usize;
            let max = (schema.bound("maxItems").unwrap_or(3) as usize).min(min.max(3));
            proptest::collection::vec(valid_value(&schema.schema["items"], doc), min..=max)
                .prop_map(Value::Array)
                .boxed()
        }
        "oneOf" => {
            let alternatives: Vec<BoxedStrategy<Value>> = schema
                .alternatives()
                .iter()
                .map(|alternative| valid_value(alternative, doc))
                .collect();
            Union::new(alternatives).boxed()
        }
        other => panic!("no generator for type {other}"),
    };
    if schema.get("nullable") == Some(&Value::Bool(true)) {
        prop_oneof![1 => Just(Value::Null), 4 => value].boxed()
    } else {
        value
    }
}

/// Strings by the schema's pattern (anchors removed, which generators do not take), or of
/// printable ASCII within its lengths; ids sometimes name the product the cluster holds.
fn valid_text(schema: &Schema) -> BoxedStrategy<Value> {
    let generated = match schema.get("pattern").and_then(Value::as_str) {
        Some(pattern) => {
            let bare = pattern.trim_start_matches('^').trim_end_matches('$');
            proptest::string::string_regex(bare)
                .expect("the document's patterns generate")
                .boxed()
        }
        None => {
            let min = schema.bound("minLength").unwrap_or(0);
            let max = schema.bound("maxLength").unwrap_or(20);
            proptest::string::string_regex(&format!("[ -~]{{{min},{max}}}"))
                .expect("a length range generates")
                .boxed()
        }
    };
    if schema.get("pattern") == Some(&json!("^[A-Za-z0-9_-]{1,64}$")) {
        prop_oneof![Just(KNOWN_PRODUCT.to_owned()), generated]
            .prop_map(Value::from)
            .boxed()
    } else {
        generated.prop_map(Value::from).boxed()
    }
}

/// Values that break the schema, most of the time (the document is the judge).
fn invalid_value(schema: &Value, doc: &Value, place: Place) -> BoxedStrategy<Value> {
    let schema = Schema::new(schema, doc);
    let in_body = place == Place::Body;
    let mut defects: Vec<BoxedStrategy<Value>> = Vec::new();
    match schema.kind() {
        "string" => {
            defects.push(invalid_text(&schema));
            if in_body {
                defects.push(Just(json!(7)).boxed());
                defects.push(Just(json!(["x"])).boxed());
            }
        }
        "integer" => {
            let mut numbers = vec![json!(1.5), json!(i64::MAX as u64 + 1), json!(-1)];
            if let Some(min) = schema.bound("minimum") {
                numbers.push(json!((min - 1) as i64));
            }
            if let Some(max) = schema.bound("maximum") {
                numbers.push(json!((max + 1) as i64));
            }
            numbers.push(if in_body {
                json!("12")
            } else {
                json!("twelve")
            });
            if in_body {
                numbers.push(json!(true));
            }
            defects.push(proptest::sample::select(numbers).boxed());
        }
        "object" => {
            defects.push(proptest::sample::select(vec![json!([1]), json!("x"), json!(7)]).boxed());
            defects.push(invalid_object(&schema));
        }
        "array" => {
            defects.push(proptest::sample::select(vec![json!({}), json!("x"), json!(7)]).boxed());
            if schema.bound("minItems").is_some_and(|min| min > 0) {
                defects.push(Just(json!([])).boxed());
            }
            let item = &schema.schema["items"];
            defects.push(
                (valid_value(item, doc), invalid_value(item, doc, place))
                    .prop_map(|(good, broken)| json!([good, broken]))
                    .boxed(),
            );
        }
        "oneOf" => {
            for alternative in schema.alternatives() {
                defects.push(invalid_value(&alternative, doc, place));
            }
        }
        _ => {}
    }
    if defects.is_empty() {
        return Just(Value::Null).boxed();
    }
    Union::new(defects).boxed()
}

/// An object with one defect: a required field missing, an unknown field, or a field broken.
fn invalid_object(schema: &Schema) -> BoxedStrategy<Value> {
    let doc = schema.doc;
    let valid = valid_value(schema.schema, doc);
    let mut defects: Vec<BoxedStrategy<Value>> = Vec::new();
    for name in schema.required() {
        defects.push(
            valid
                .clone()
                .prop_map(move |mut value| {
                    value.as_object_mut().expect("an object").remove(&name);
                    value
                })
                .boxed(),
        );
    }
    defects.push(
        valid
            .clone()
            .prop_map(|mut value| {
                value
                    .as_object_mut()
                    .expect("an object")
                    .insert("extra".into(), json!(1));
                value
            })
            .boxed(),
    );
    for (name, property) in schema.properties() {
        let broken = invalid_value(&property, doc, Place::Body);
        defects.push(
            (valid.clone(), broken)
                .prop_map(move |(mut value, broken)| {
                    value
                        .as_object_mut()
                        .expect("an object")
                        .insert(name.clone(), broken);
                    value
                })
                .boxed(),
        );
    }
    Union::new(defects).boxed()
}

/// Strings out of the schema: empty, too long (in characters or in bytes), blank, or holding a
/// character the pattern may not allow.
fn invalid_text(schema: &Schema) -> BoxedStrategy<Value> {
    let mut texts: Vec<BoxedStrategy<String>> = vec![
        Just(String::new()).boxed(),
        Just(" ".to_owned()).boxed(),
        Just("\u{3000}\u{a0}".to_owned()).boxed(),
    ];
    if let Some(max) = schema.bound("maxLength") {
        texts.push(Just("a".repeat(max as usize + 1)).boxed());
    }
    if let Some(max) = schema.bound("x-utf8-bytes-max") {
        texts.push(Just("é".repeat(max as usize / 2 + 1)).boxed());
    }
    let odd = prop_oneof![
        Just(' '),
        Just('/'),
        Just('.'),
        Just('%'),
        Just('é'),
        Just('\u{1}'),
        Just('\u{7f}'),
        Just('\u{85}'),
        Just('\t'),
    ];
    texts.push(
        ("[a-z0-9]{0,8}", odd, "[a-z0-9]{1,8}")
            .prop_map(|(head, odd, tail)| format!("{head}{odd}{tail}"))
            .boxed(),
    );
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        let allowed = allowed.clone();
        texts.push(
            "[a-z]{0,12}"
                .prop_filter("not one of the enum", move |text| {
                    !allowed.contains(&json!(text))
                })
                .boxed(),
        );
    }
    Union::new(texts).prop_map(Value::from).boxed()
}

/// Whether a value can be sent where it goes, unchanged: header values are visible ASCII or
/// non-ASCII bytes with no surrounding space (HTTP strips it), and a path segment is never a
/// dot segment (URLs resolve them).
fn sendable(place: Place) -> impl Fn(&Value) -> bool {
    move |value| {
        let text = wire_text(value);
        match place {
            Place::Header => {
                !text.starts_with(' ')
                    && !text.ends_with(' ')
                    && text.chars().all(|c| c == ' ' || !c.is_control())
            }
            Place::Path => text != "." && text != "..",
            Place::Query | Place::Body => true,
        }
    }
}

/// A parameter's value as it is written in a URL or a header.
fn wire_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

// ---- sending and judging ----

struct Probe {
    http: reqwest::Client,
    gateway: String,
    admin_token: String,
}

impl Probe {
    async fn check(
        &self,
        operation: &Operation,
        request: &Request,
        valid: bool,
    ) -> Result<(), TestCaseError> {
        let (status, code) = self.send(operation, request).await;
        let shown = describe(operation, request);
        prop_assert!(status < 500, "{shown}: answered {status} {code:?}");
        if valid {
            let refused = status == 400 && !self.over_stock_max(operation, request).await;
            prop_assert!(
                !refused && status != 401 && status != 405 && code.as_deref() != Some("not_found"),
                "valid by the document, refused: {shown}: {status} {code:?}"
            );
        } else {
            let empty_segment = operation.slots.iter().zip(request).any(|(slot, value)| {
                slot.place == Place::Path && value.as_ref().is_some_and(|v| wire_text(v).is_empty())
            });
            let refused = (status == 400 && code.as_deref() == Some("invalid_request"))
                || (empty_segment && status == 404 && code.as_deref() == Some("not_found"));
            prop_assert!(
                refused,
                "invalid by the document, accepted: {shown}: {status} {code:?}"
            );
        }
        Ok(())
    }

    /// A valid restock may still be refused: when the stock would pass [`STOCK_MAX`], as the
    /// leader sees it.
    async fn over_stock_max(&self, operation: &Operation, request: &Request) -> bool {
        if !operation.path.ends_with("/restock") {
            return false;
        }
        let value_of = |place| {
            operation
                .slots
                .iter()
                .zip(request)
                .find(|(slot, _)| slot.place == place)
                .and_then(|(_, value)| value.clone())
        };
        let (Some(id), Some(body)) = (value_of(Place::Path), value_of(Place::Body)) else {
            return false;
        };
        let quantity = body["quantity"].as_u64().unwrap_or(0);
        // Linearizable: a gateway's local view may not yet hold the restock acknowledged just
        // before this one, and the leader judged this one against it.
        let url = format!(
            "{}/v1/products/{}?consistency=linearizable",
            self.gateway,
            encode(&wire_text(&id))
        );
        let Ok(response) = self.http.get(url).send().await else {
            return false;
        };
        let view: Value = response.json().await.unwrap_or_default();
        view["product"]["stock"]
            .as_u64()
            .is_some_and(|stock| stock.saturating_add(quantity) > STOCK_MAX)
    }

    /// Send the request; its status and error code.
    async fn send(&self, operation: &Operation, request: &Request) -> (u16, Option<String>) {
        let mut path = operation.path.clone();
        let mut query = Vec::new();
        let mut headers = Vec::new();
        let mut body = None;
        for (slot, value) in operation.slots.iter().zip(request) {
            let Some(value) = value else { continue };
            match slot.place {
                Place::Path => {
                    path = path.replace(&format!("{{{}}}", slot.name), &encode(&wire_text(value)))
                }
                Place::Query => query.push(format!("{}={}", slot.name, encode(&wire_text(value)))),
                Place::Header => headers.push((slot.name.clone(), wire_text(value))),
                Place::Body => body = Some(value.to_string()),
            }
        }
        let mut url = format!("{}{path}", self.gateway);
        if !query.is_empty() {
            url = format!("{url}?{}", query.join("&"));
        }
        let method = reqwest::Method::from_bytes(operation.method.as_bytes()).expect("a method");
        let mut builder = self.http.request(method, url);
        for (name, value) in headers {
            let value = reqwest::header::HeaderValue::from_bytes(value.as_bytes())
                .expect("generated header values are sendable");
            builder = builder.header(name, value);
        }
        if operation.bearer {
            builder = builder.bearer_auth(&self.admin_token);
        }
        if let Some(body) = body {
            builder = builder
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let response = builder.send().await.expect("the gateway answers");
        let status = response.status().as_u16();
        if operation.path == "/v1/stream" && status == 200 {
            // An endless event stream: the head is the answer.
            return (status, None);
        }
        let code = response
            .json::<flashstock_api::ErrorBody>()
            .await
            .ok()
            .map(|body| body.code.to_string());
        (status, code)
    }
}

fn describe(operation: &Operation, request: &Request) -> String {
    let values: Vec<String> = operation
        .slots
        .iter()
        .zip(request)
        .map(|(slot, value)| match value {
            Some(value) => format!("{}={value}", slot.name),
            None => format!("{}=(left out)", slot.name),
        })
        .collect();
    format!(
        "{} {} [{}]",
        operation.method,
        operation.path,
        values.join(", ")
    )
}
