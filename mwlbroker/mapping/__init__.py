"""From HL7 to the domain: reading fields, and the site mapping files."""
