//! The derive macros of `iot-plugin` (see that crate for what they are for):
//! - `#[derive(State)]`: encodes a struct's fields in order with `iot_plugin::Field`;
//! - `#[derive(Params)]`: parses a struct's fields from the output's parameters, by name,
//!   with `#[param(default = "…")]` for optional ones.

use proc_macro::TokenStream;
use proc_macro2::TokenStream as Tokens;
use quote::{format_ident, quote};
use syn::{parse_macro_input, Data, DeriveInput, Fields, LitStr};

#[proc_macro_derive(State)]
pub fn derive_state(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand_state(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

#[proc_macro_derive(Params, attributes(param))]
pub fn derive_params(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand_params(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

fn struct_fields<'a>(input: &'a DeriveInput, derive: &str) -> syn::Result<&'a Fields> {
    match &input.data {
        Data::Struct(data) => Ok(&data.fields),
        _ => Err(syn::Error::new_spanned(
            &input.ident,
            format!("#[derive({derive})] works on structs only"),
        )),
    }
}

fn expand_state(input: &DeriveInput) -> syn::Result<Tokens> {
    let fields = struct_fields(input, "State")?;
    let name = &input.ident;
    let (impl_generics, type_generics, where_clause) = input.generics.split_for_impl();
    let get = quote!(::iot_plugin::Field::get(&mut reader)?);
    let (puts, build): (Vec<Tokens>, Tokens) = match fields {
        Fields::Named(named) => {
            let idents: Vec<_> = named
                .named
                .iter()
                .map(|f| f.ident.clone().unwrap())
                .collect();
            (
                idents
                    .iter()
                    .map(|i| quote!(::iot_plugin::Field::put(&self.#i, out);))
                    .collect(),
                quote!(#name { #( #idents: #get, )* }),
            )
        }
        Fields::Unnamed(unnamed) => {
            let indices: Vec<_> = (0..unnamed.unnamed.len()).map(syn::Index::from).collect();
            let gets = indices.iter().map(|_| get.clone());
            (
                indices
                    .iter()
                    .map(|i| quote!(::iot_plugin::Field::put(&self.#i, out);))
                    .collect(),
                quote!(#name ( #( #gets, )* )),
            )
        }
        Fields::Unit => (Vec::new(), quote!(#name)),
    };
    Ok(quote! {
        impl #impl_generics ::iot_plugin::State for #name #type_generics #where_clause {
            fn encode(&self, out: &mut ::std::vec::Vec<u8>) {
                #( #puts )*
            }
            fn decode(bytes: &[u8]) -> ::iot_plugin::Result<Self> {
                #[allow(unused_mut)]
                let mut reader = ::iot_plugin::Reader::new(bytes);
                // Struct fields are evaluated in the order written: the declared order.
                let state = #build;
                reader.end()?;
                Ok(state)
            }
        }
    })
}

fn expand_params(input: &DeriveInput) -> syn::Result<Tokens> {
    let Fields::Named(named) = struct_fields(input, "Params")? else {
        return Err(syn::Error::new_spanned(
            &input.ident,
            "#[derive(Params)] needs named fields: each is the parameter of that name",
        ));
    };
    let name = &input.ident;
    let mut keys = Vec::new();
    let mut inits = Vec::new();
    for field in &named.named {
        let ident = field.ident.clone().unwrap();
        let key = format_ident!("{}", ident)
            .to_string()
            .trim_start_matches("r#")
            .to_owned();
        let mut default = quote!(::std::option::Option::None);
        for attr in field.attrs.iter().filter(|a| a.path().is_ident("param")) {
            attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("default") {
                    let text: LitStr = meta.value()?.parse()?;
                    default = quote!(::std::option::Option::Some(#text));
                    Ok(())
                } else {
                    Err(meta.error("expected #[param(default = \"…\")]"))
                }
            })?;
        }
        inits.push(quote!(#ident: ::iot_plugin::__private::field(pairs, #key, #default)?));
        keys.push(key);
    }
    Ok(quote! {
        impl ::iot_plugin::Params for #name {
            fn parse(pairs: &[(::std::string::String, ::std::string::String)]) -> ::iot_plugin::Result<Self> {
                ::iot_plugin::__private::only(pairs, &[#( #keys ),*])?;
                Ok(#name { #( #inits, )* })
            }
        }
    })
}
