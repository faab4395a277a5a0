//! First-start seeding: the admin account and the demo catalog.

use agora_actors::account::{AccountCommand, Role};
use agora_actors::client::{AskError, EntityClient};
use agora_actors::ids::user_id_for_email;
use agora_actors::money::Money;
use agora_actors::product::{ProductCommand, ProductDetails};
use agora_actors::stock::StockCommand;
use agora_actors::{Command, DomainError, EntityKind, EntityRef, Reply};

/// The seeded admin account's email.
pub const ADMIN_EMAIL: &str = "admin@agora.local";

/// What seeding the admin did.
#[derive(Debug, PartialEq, Eq)]
pub enum AdminSeed {
    /// The account existed and its password was left alone.
    Existing,
    /// The account's password was set from the environment.
    PasswordSet,
    /// The account was created with this generated password.
    Created(Option<String>),
}

/// Makes sure the admin account exists; `password` (from `AGORA_ADMIN_PASSWORD`) sets its
/// password; without one, a new account gets `generated`.
pub async fn seed_admin(
    client: &dyn EntityClient,
    password: Option<String>,
    generated: String,
    hash: impl Fn(String) -> Result<String, String>,
    verify: impl Fn(&str, &str) -> bool,
) -> Result<AdminSeed, String> {
    let admin = EntityRef::new(EntityKind::Account, user_id_for_email(ADMIN_EMAIL));
    match client
        .ask(
            admin.clone(),
            Command::Account(AccountCommand::GetCredentials),
        )
        .await
    {
        Ok(Reply::Credentials { password_hash, .. }) => match password {
            Some(p) if !verify(&p, &password_hash) => {
                let password_hash = hash(p)?;
                client
                    .ask(
                        admin,
                        Command::Account(AccountCommand::SetPassword { password_hash }),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(AdminSeed::PasswordSet)
            }
            _ => Ok(AdminSeed::Existing),
        },
        Err(AskError::Domain(DomainError::BadCredentials)) | Ok(_) => {
            let (plain, shown) = match password {
                Some(p) => (p, None),
                None => (generated.clone(), Some(generated)),
            };
            let cmd = AccountCommand::Register {
                email: ADMIN_EMAIL.into(),
                name: "Administrator".into(),
                password_hash: hash(plain)?,
                role: Role::Admin,
            };
            client
                .ask(admin, Command::Account(cmd))
                .await
                .map_err(|e| e.to_string())?;
            Ok(AdminSeed::Created(shown))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// The demo catalog: (sku, name, category, price in paise, units in stock).
pub const DEMO_CATALOG: &[(&str, &str, &str, u64, u64)] = &[
    (
        "ELEC-PHONE-01",
        "Aurora 5G Smartphone",
        "electronics",
        1_899_900,
        40,
    ),
    (
        "ELEC-EARBUD-01",
        "Wireless Earbuds Pro",
        "electronics",
        349_900,
        120,
    ),
    (
        "ELEC-LAPTOP-01",
        "Ultrabook 14 inch",
        "electronics",
        6_499_900,
        15,
    ),
    (
        "ELEC-WATCH-01",
        "Fitness Smartwatch",
        "electronics",
        499_900,
        60,
    ),
    (
        "ELEC-SPEAKER-01",
        "Bluetooth Speaker Mini",
        "electronics",
        199_900,
        80,
    ),
    ("BOOK-RUST-01", "Programming in Rust", "books", 89_900, 50),
    (
        "BOOK-DIST-01",
        "Designing Distributed Systems",
        "books",
        129_900,
        35,
    ),
    (
        "BOOK-COOK-01",
        "Everyday Indian Cooking",
        "books",
        49_900,
        70,
    ),
    ("BOOK-NOVEL-01", "The Monsoon Letters", "books", 39_900, 90),
    (
        "HOME-KETTLE-01",
        "Electric Kettle 1.5L",
        "home",
        149_900,
        45,
    ),
    ("HOME-LAMP-01", "LED Desk Lamp", "home", 99_900, 55),
    ("HOME-MUG-01", "Ceramic Mug Set of 4", "home", 59_900, 100),
    (
        "HOME-CHAIR-01",
        "Ergonomic Office Chair",
        "home",
        1_199_900,
        12,
    ),
    (
        "APP-TSHIRT-01",
        "Cotton Crew T-Shirt",
        "apparel",
        49_900,
        200,
    ),
    ("APP-JACKET-01", "Rain Jacket", "apparel", 299_900, 30),
    ("APP-SHOES-01", "Running Shoes", "apparel", 399_900, 40),
    ("APP-KURTA-01", "Linen Kurta", "apparel", 179_900, 50),
    ("SPORT-YOGA-01", "Yoga Mat 6mm", "sports", 129_900, 65),
    (
        "SPORT-BAT-01",
        "English Willow Cricket Bat",
        "sports",
        899_900,
        20,
    ),
    (
        "SPORT-BOTTLE-01",
        "Steel Water Bottle",
        "sports",
        69_900,
        150,
    ),
    ("GROC-TEA-01", "Assam Tea 500g", "grocery", 34_900, 300),
    (
        "GROC-COFFEE-01",
        "Filter Coffee 250g",
        "grocery",
        29_900,
        250,
    ),
    ("GROC-SPICE-01", "Garam Masala 100g", "grocery", 14_900, 400),
    ("GROC-RICE-01", "Basmati Rice 5kg", "grocery", 79_900, 120),
];

/// Creates the demo catalog and its stock (idempotent: existing products are skipped).
pub async fn seed_demo_catalog(client: &dyn EntityClient) -> Result<usize, AskError> {
    let mut created = 0;
    for (sku, name, category, price, units) in DEMO_CATALOG {
        let details = ProductDetails {
            name: (*name).into(),
            description: format!("{name}, from the Agora demo catalog."),
            category: (*category).into(),
            price: Money::shop(*price),
            attributes: Default::default(),
        };
        match client
            .ask(
                EntityRef::new(EntityKind::Product, *sku),
                Command::Product(ProductCommand::Create(details)),
            )
            .await
        {
            Ok(_) => {
                client
                    .ask(
                        EntityRef::new(EntityKind::StockItem, *sku),
                        Command::Stock(StockCommand::Receive { quantity: *units }),
                    )
                    .await?;
                created += 1;
            }
            Err(AskError::Domain(DomainError::AlreadyExists(_))) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(created)
}
