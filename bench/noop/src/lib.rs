//! A proxy-wasm HTTP filter that lets every request through untouched. It
//! reads `:path`, as the cheapest useful filter would, so that the
//! benchmark's floor includes one host call per request.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};

struct Root;
struct Stream;

impl Context for Root {}
impl RootContext for Root {
    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream))
    }
}

impl Context for Stream {}
impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _headers: usize, _end: bool) -> Action {
        let _ = proxy_wasm::hostcalls::get_map_value_bytes(
            proxy_wasm::types::MapType::HttpRequestHeaders,
            ":path",
        );
        Action::Continue
    }
}

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| Box::new(Root));
}}
