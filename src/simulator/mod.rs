//! A strict, in-memory CloudFront control-plane server speaking the REST-XML API.
